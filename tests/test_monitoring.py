"""Monitoring without Dagster: reference profiles saved beside a model, drift of a period, the retrain decision."""

import json

import duckdb
import numpy as np
import polars as pl
import pytest

from mlplatform.datasets.periods import Periods
from mlplatform.ml.scoring import SERVED_SCORE
from mlplatform.monitoring import champion as monitoring
from mlplatform.monitoring.champion import PeriodSignals, in_cooldown, monitored_columns, retrain_reason

MONTHLY, YEARLY, DAILY = Periods("monthly", "2013-01"), Periods("yearly", "2015"), Periods("daily", "2013-01-01")


def _features(dataset, rows: int, seed: int, warmer: float = 0.0) -> pl.DataFrame:
    """Rows shaped like the dataset's model features; ``warmer`` shifts its first numeric feature."""
    rng = np.random.default_rng(seed)
    model = dataset.model
    frame = {column: rng.normal(10, 2, rows) for column in model.numeric}
    frame[model.numeric[0]] = frame[model.numeric[0]] + warmer
    frame |= {column: rng.choice(["a", "b", "c"], rows) for column in model.categorical}
    return pl.DataFrame(frame).with_columns(pl.lit("train").alias("split"))


@pytest.fixture
def reference(dataset, tmp_path):
    training_set = tmp_path / "training_set.parquet"
    # Holdout rows in the training set, far off, must stay out of the profile: the filter picks the training rows.
    holdout = _features(dataset, 2000, 3, warmer=50.0).with_columns(pl.lit("holdout").alias("split"))
    pl.concat([_features(dataset, 5000, 1), holdout]).write_parquet(training_set)
    scores = np.random.default_rng(2).beta(2, 6, 3000)
    columns = monitored_columns(dataset.model.categorical, dataset.model.numeric)
    monitoring.save_reference_profiles(tmp_path, training_set, "split = 'train'", scores, columns)
    return monitoring.load_reference_profiles(tmp_path)


def test_monitored_columns_are_the_model_s_features_with_their_kind(dataset):
    columns = monitored_columns(dataset.model.categorical, dataset.model.numeric)
    assert list(columns) == dataset.feature_columns
    assert {column for column, kind in columns.items() if kind == "categorical"} == set(dataset.model.categorical)
    assert {column for column, kind in columns.items() if kind == "numeric"} == set(dataset.model.numeric)
    assert monitored_columns([], ["x"]) == {"x": "numeric"} and monitored_columns(["c"], []) == {"c": "categorical"}


def test_profiles_are_saved_beside_the_model_as_json(dataset, reference, tmp_path):
    assert set(reference) == {"features", "predictions"}
    assert set(reference["features"]["columns"]) == set(dataset.model.categorical) | set(dataset.model.numeric)
    assert set(reference["predictions"]["columns"]) == {monitoring.SCORE_COLUMN}
    assert json.loads((tmp_path / monitoring.REFERENCE_FILE).read_text()) == reference
    with pytest.raises(FileNotFoundError, match="before reference profiles were saved"):
        monitoring.load_reference_profiles(tmp_path / "elsewhere")


def test_a_warmer_period_drifts_on_the_warmed_feature_only(dataset, reference):
    warmed = dataset.model.numeric[0]
    with duckdb.connect() as con:
        con.register("same", _features(dataset, 3000, 7).to_arrow())
        con.register("warmer", _features(dataset, 3000, 7, warmer=4.0).to_arrow())
        # The holdout rows (shifted by 50) were left out of the profile, or the training-like period would drift.
        assert monitoring.feature_drift(con, reference, "same", 0.5).drifted_columns == []
        report = monitoring.feature_drift(con, reference, "warmer", 0.5)
        assert report.drifted_columns == [warmed] and not report.dataset_drift
        assert report.drifted_share == pytest.approx(1 / len(dataset.feature_columns))
        # A low drift share makes the same one column a dataset drift.
        assert monitoring.feature_drift(con, reference, "warmer", 1 / len(dataset.feature_columns)).dataset_drift


def test_prediction_drift_reads_the_champion_s_score_column(dataset, reference):
    """The saved score profile is named as scoring names the probability it serves (prediction_drift reads the
    champion's under that name), so predictions compare."""
    assert monitoring.SCORE_COLUMN == SERVED_SCORE
    rng = np.random.default_rng(5)
    with duckdb.connect() as con:
        con.register("confident", pl.DataFrame({SERVED_SCORE: np.full(100, 0.9)}).to_arrow())
        con.register("usual", pl.DataFrame({SERVED_SCORE: rng.beta(2, 6, 3000)}).to_arrow())
        drifted = monitoring.prediction_drift(con, reference, f"SELECT {SERVED_SCORE} FROM confident")
        assert (drifted.column, drifted.status, drifted.drifted) == (SERVED_SCORE, "ok", True)
        assert not monitoring.prediction_drift(con, reference, f"SELECT {SERVED_SCORE} FROM usual").drifted


def test_performance_needs_labels_of_both_kinds():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    assert monitoring.performance(np.array([1, 1]), np.array([0.2, 0.4]), 0.7, 0.05) is None
    assert monitoring.performance(np.array([]), np.array([]), 0.7, 0.05) is None
    result = monitoring.performance(labels, scores, holdout_roc_auc=0.9, max_auc_drop=0.05)
    assert result.metrics["roc_auc"] == 1.0 and result.auc_drop == pytest.approx(-0.1) and not result.degraded
    assert monitoring.performance(labels, 1 - scores, 0.9, 0.05).degraded


def test_the_retrain_reason_and_the_cooldown():
    drifted = PeriodSignals("2013-05", "v1", "2013-03", True, 0.6, ("temp", "dewp"))
    assert retrain_reason(drifted, MONTHLY) == "dataset drift (60% of features: temp, dewp)"
    degraded = PeriodSignals("2013-05", "v1", "2013-03", auc_drop=0.07, degraded=True)
    assert retrain_reason(degraded, MONTHLY) == "ROC AUC 0.070 below the champion's held-out AUC"
    both = PeriodSignals("2013-05", "v1", "2013-03", True, 0.6, ("temp",), auc_drop=0.07, degraded=True)
    assert retrain_reason(both, MONTHLY) == (
        "dataset drift (60% of features: temp); ROC AUC 0.070 below the champion's held-out AUC"
    )
    assert retrain_reason(PeriodSignals("2013-05", "v1", "2013-03", drifted_share=0.2), MONTHLY) is None
    assert retrain_reason(PeriodSignals("2013-03", "v1", "2013-03", True, 0.9, ("temp",)), MONTHLY) is None
    assert retrain_reason(PeriodSignals("2013-02", "v1", "2013-03", True, 0.9, ("temp",)), MONTHLY) is None
    assert retrain_reason(PeriodSignals("2014-01", "v1", "2013-12", True, 0.9, ("temp",)), MONTHLY) is not None
    assert not in_cooldown(MONTHLY, "2013-05", None, 2)
    assert in_cooldown(MONTHLY, "2013-05", "2013-04", 2) and not in_cooldown(MONTHLY, "2013-06", "2013-04", 2)
    assert not in_cooldown(MONTHLY, "2014-01", "2013-12", 1)
    assert in_cooldown(MONTHLY, "2014-01", "2013-12", 2)  # across a year's end, one month apart
    assert not in_cooldown(MONTHLY, "2013-05", "2013-04", 0)  # no cooldown at all


def test_the_retrain_decision_counts_in_the_dataset_s_own_periods():
    """Years for a yearly dataset, days for a daily one: the champion's held-out period and the cooldown."""
    drifted = PeriodSignals("2017", "v1", "2016", True, 0.6, ("AGEP",))
    assert retrain_reason(drifted, YEARLY) == "dataset drift (60% of features: AGEP)"
    assert retrain_reason(PeriodSignals("2016", "v1", "2016", True, 0.6, ("AGEP",)), YEARLY) is None
    assert in_cooldown(YEARLY, "2017", "2016", 2) and not in_cooldown(YEARLY, "2018", "2016", 2)
    assert not in_cooldown(YEARLY, "2017", "2016", 1)
    assert retrain_reason(PeriodSignals("2013-02-01", "v1", "2013-01-31", True, 0.6, ("x",)), DAILY) is not None
    assert in_cooldown(DAILY, "2013-03-01", "2013-02-28", 2) and not in_cooldown(DAILY, "2013-03-02", "2013-02-28", 2)
    with pytest.raises(ValueError, match="yearly period"):
        in_cooldown(YEARLY, "2017-01", "2016", 1)  # a key of another grain is refused, not compared as text
