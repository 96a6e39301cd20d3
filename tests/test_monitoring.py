"""Monitoring without Dagster: reference profiles saved beside a model, drift of a month, the retrain decision."""

import json

import duckdb
import numpy as np
import polars as pl
import pytest

from mlplatform import monitoring
from mlplatform.model import CATEGORICAL, NUMERIC
from mlplatform.monitoring import MonthSignals, in_cooldown, retrain_reason


def _features(rows: int, seed: int, warmer: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frame = {column: rng.normal(10, 2, rows) for column in NUMERIC}
    frame["temp"] = frame["temp"] + warmer
    frame |= {column: rng.choice(["a", "b", "c"], rows) for column in CATEGORICAL}
    return pl.DataFrame(frame).with_columns(pl.lit("train").alias("split"))


@pytest.fixture
def reference(tmp_path):
    training_set = tmp_path / "training_set.parquet"
    _features(5000, 1).write_parquet(training_set)
    scores = np.random.default_rng(2).beta(2, 6, 3000)
    monitoring.save_reference_profiles(tmp_path, training_set, "split = 'train'", scores)
    return monitoring.load_reference_profiles(tmp_path)


def test_profiles_are_saved_beside_the_model_as_json(reference, tmp_path):
    assert set(reference) == {"features", "predictions"}
    assert set(reference["features"]["columns"]) == set(CATEGORICAL) | set(NUMERIC)
    assert json.loads((tmp_path / monitoring.REFERENCE_FILE).read_text()) == reference
    with pytest.raises(FileNotFoundError, match="before reference profiles were saved"):
        monitoring.load_reference_profiles(tmp_path / "elsewhere")


def test_a_warmer_month_drifts_on_temperature_only(reference):
    with duckdb.connect() as con:
        con.register("same", _features(3000, 7).to_arrow())
        con.register("warmer", _features(3000, 7, warmer=4.0).to_arrow())
        assert monitoring.feature_drift(con, reference, "same", 0.5).drifted_columns == []
        report = monitoring.feature_drift(con, reference, "warmer", 0.5)
        assert report.drifted_columns == ["temp"] and not report.dataset_drift
        con.register("scores", pl.DataFrame({"delay_probability": np.full(100, 0.9)}).to_arrow())
        assert monitoring.prediction_drift(con, reference, "SELECT delay_probability FROM scores").drifted


def test_performance_needs_labels_of_both_kinds():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    assert monitoring.performance(np.array([1, 1]), np.array([0.2, 0.4]), 0.7, 0.05) is None
    assert monitoring.performance(np.array([]), np.array([]), 0.7, 0.05) is None
    result = monitoring.performance(labels, scores, holdout_roc_auc=0.9, max_auc_drop=0.05)
    assert result.metrics["roc_auc"] == 1.0 and result.auc_drop == pytest.approx(-0.1) and not result.degraded
    assert monitoring.performance(labels, 1 - scores, 0.9, 0.05).degraded


def test_the_retrain_reason_and_the_cooldown():
    drifted = MonthSignals("2013-05", "v1", "2013-03", True, 0.6, ("temp", "dewp"))
    assert retrain_reason(drifted) == "dataset drift (60% of features: temp, dewp)"
    degraded = MonthSignals("2013-05", "v1", "2013-03", auc_drop=0.07, degraded=True)
    assert retrain_reason(degraded) == "ROC AUC 0.070 below the champion's held-out AUC"
    assert retrain_reason(MonthSignals("2013-05", "v1", "2013-03", drifted_share=0.2)) is None
    assert retrain_reason(MonthSignals("2013-03", "v1", "2013-03", True, 0.9, ("temp",))) is None
    assert not in_cooldown("2013-05", None, 2)
    assert in_cooldown("2013-05", "2013-04", 2) and not in_cooldown("2013-06", "2013-04", 2)
    assert not in_cooldown("2014-01", "2013-12", 1)
