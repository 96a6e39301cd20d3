"""training_set and delay_model materialized for real, on top of three materialized months."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlplatform.assets import evaluation, training
from mlplatform.cli import main
from mlplatform.model import load_model
from mlplatform.resources import resources_for

ROOT = Path(__file__).parents[1]
SMALL_RUN = {
    "ops": {
        "training_set": {"config": {"target_month": "2013-03", "window_months": 2}},
        "delay_model": {"config": {"hidden": [32], "max_epochs": 3, "batch_size": 256, "learning_rate": 0.003}},
    }
}


@pytest.fixture
def three_months(data_dir, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["materialize", "--months", "2013-01..2013-03"]) == 0
    return data_dir


def _materialize(run_config=SMALL_RUN, raise_on_error=True):
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [training.training_set, training.delay_model, evaluation.model_evaluation],
            instance=instance,
            resources=resources_for("local"),
            run_config=run_config,
            raise_on_error=raise_on_error,
        )


def test_the_model_is_trained_on_the_versioned_training_set(three_months):
    result = _materialize()
    window = result.asset_materializations_for_node("training_set")[0].metadata
    assert window["window"].value == "2013-01..2013-02" and window["target_month"].value == "2013-03"
    assert window["train_rows"].value == 27_004 + 24_951 and window["holdout_rows"].value == 28_834
    assert set(window["dvc/inputs"].value) == {f"flight_features[2013-0{m}]" for m in (1, 2, 3)}

    model = result.asset_materializations_for_node("delay_model")[0].metadata
    assert model["holdout_roc_auc"].value > 0.65
    assert model["training_data_version"].value == window["dvc/md5"].value
    assert model["epochs_run"].value <= 3 and "validation_loss" in model["training_curve"].value

    artifact = load_model(three_months / "versions" / "delay_model")
    assert artifact.manifest["training_data_version"] == window["dvc/md5"].value
    assert artifact.manifest["metrics"]["holdout_roc_auc"] == pytest.approx(model["holdout_roc_auc"].value)
    assert {"torch", "polars", "duckdb"} <= set(artifact.manifest["libraries"])
    holdout = pl.read_parquet(three_months / "versions" / "training_set" / "training_set.parquet")
    assert artifact.predict(holdout.head(10)).shape == (10,)


def test_same_data_config_and_seed_give_the_same_model(three_months):
    first = _materialize().asset_materializations_for_node("delay_model")[0].metadata
    second = _materialize().asset_materializations_for_node("delay_model")[0].metadata
    assert first["dvc/md5"].value == second["dvc/md5"].value
    assert first["holdout_roc_auc"].value == second["holdout_roc_auc"].value


def test_a_window_with_missing_months_fails_with_what_to_do(three_months):
    config = {"ops": {"training_set": {"config": {"target_month": "2013-06", "window_months": 2}}}}
    with pytest.raises(ValueError, match=r"no rows for \['2013-04', '2013-05', '2013-06'\]"):
        _materialize(config)


def test_the_evaluation_compares_with_the_baseline_and_writes_a_card(three_months):
    result = _materialize()
    metadata = result.asset_materializations_for_node("model_evaluation")[0].metadata
    model = result.asset_materializations_for_node("delay_model")[0].metadata
    assert metadata["roc_auc"].value == pytest.approx(model["holdout_roc_auc"].value)
    assert metadata["model_version"].value == model["dvc/md5"].value
    assert 0.5 < metadata["baseline_roc_auc"].value < metadata["roc_auc"].value
    assert {"pr_auc", "log_loss", "brier", "calibration_error"} <= set(metadata)
    card = metadata["model_card"].value
    assert card.startswith(f"# Delay model {model['dvc/md5'].value}") and "## By carrier" in card
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "beats_baseline" and check.passed


def test_the_gate_stops_a_model_below_the_minimum(three_months):
    config = {"ops": {**SMALL_RUN["ops"], "model_evaluation": {"config": {"min_roc_auc": 0.99}}}}
    result = _materialize(config, raise_on_error=False)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["min_roc_auc"].value == 0.99
    assert not result.success  # blocking: nothing downstream of the evaluation runs
