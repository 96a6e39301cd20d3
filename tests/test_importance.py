"""The retraining signal's core: permutation importance of a really trained model, and drift weighed by it, so
that a feature the model ignores can drift heavily at no cost and a shift in the one it relies on counts."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest
from test_model import small, synthetic

from mlplatform.datasets.declaration import ModelSection
from mlplatform.ml.importance import permutation_importance
from mlplatform.ml.training import train
from mlplatform.monitoring import drift
from mlplatform.monitoring.champion import MAJOR_PSI, auc_at_risk

FEATURES = {"x": "numeric", "z": "numeric"}  # the label follows x; z is noise the model can ignore


@pytest.fixture(scope="module")
def trained():
    section = ModelSection(
        name="synthetic", description="A test.", label="y_numeric", categorical=[], numeric=["x", "z"]
    )
    model = train(synthetic(4000, 1), small(section), ["t"]).model
    held_out = synthetic(3000, 2)
    importance = permutation_importance(model, held_out, held_out["y_numeric"].to_numpy(), list(FEATURES))
    return model, held_out, importance


def risk_of(
    reference: pl.DataFrame, current: pl.DataFrame, importance: dict[str, float]
) -> tuple[float, drift.DriftReport]:
    with duckdb.connect() as con:
        con.register("reference_rows", reference.select(list(FEATURES)).to_arrow())
        con.register("current_rows", current.select(list(FEATURES)).to_arrow())
        report = drift.compare(drift.profile(con, "reference_rows", FEATURES), con, "current_rows")
    return auc_at_risk(report, importance), report


def test_importance_is_the_auc_lost_without_the_feature(trained):
    model, held_out, importance = trained
    # x carries the label: shuffling it costs most of the model's lift over 0.5; z costs next to nothing.
    assert importance["x"] > 0.25
    assert importance["z"] < 0.01
    # Same rows, same seed: the same figures (the artifact that stores them must not change between runs).
    again = permutation_importance(model, held_out, held_out["y_numeric"].to_numpy(), list(FEATURES))
    assert again == importance


def test_a_heavy_shift_in_an_ignored_feature_puts_nothing_at_risk(trained):
    _, held_out, importance = trained
    shifted = held_out.with_columns(pl.col("z") * 3 + 4)  # far outside anything trained on
    risk, report = risk_of(held_out, shifted, importance)
    by_column = {column.column: column for column in report.columns}
    assert by_column["z"].psi > 10 * MAJOR_PSI and by_column["z"].drifted
    assert report.drifted_share == 0.5  # the old share-of-features signal sees half the features drifted
    assert risk < 0.01


def test_a_shift_in_the_feature_the_model_relies_on_puts_its_worth_at_risk(trained):
    _, held_out, importance = trained
    shifted = held_out.with_columns(pl.col("x") + 1.0)
    risk, report = risk_of(held_out, shifted, importance)
    assert {column.column: column.psi for column in report.columns}["x"] > MAJOR_PSI
    assert risk == pytest.approx(importance["x"] + importance["z"] * min(1.0, report.columns[1].psi / MAJOR_PSI))
    assert risk > 0.25


def test_no_drift_no_risk_and_a_small_shift_a_share_of_it(trained):
    _, held_out, importance = trained
    unchanged, _ = risk_of(held_out, synthetic(3000, 3), importance)
    slight, report = risk_of(held_out, held_out.with_columns(pl.col("x") + 0.15), importance)
    assert unchanged < 0.02
    psi = {column.column: column.psi for column in report.columns}["x"]
    assert psi < MAJOR_PSI and slight == pytest.approx(importance["x"] * psi / MAJOR_PSI, abs=0.01)
    assert unchanged < slight < importance["x"]
