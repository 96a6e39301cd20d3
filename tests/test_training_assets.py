"""training_set and delay_model materialized for real, on top of three materialized months."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from conftest import git_project

from mlplatform.assets import evaluation, serving, training
from mlplatform.assets.serving import TRIGGER_TAG
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


@pytest.fixture(scope="module")
def three_months_once(seeded_landing, tmp_path_factory):
    """A project (git repository, DVC, warehouse) and Dagster home with 2013-01..03 materialized, made once."""
    root = tmp_path_factory.mktemp("three_months")
    project = git_project(root / "project")
    shutil.copytree(seeded_landing, project / "data" / "landing")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPLATFORM_DATA_DIR", str(project / "data"))
        patch.setenv("DAGSTER_HOME", str(home))
        assert main(["materialize", "--months", "2013-01..2013-03"]) == 0
    return root


@pytest.fixture
def three_months(three_months_once, tmp_path, monkeypatch):
    """A private copy of ``three_months_once`` (its DVC remote is re-pointed at the copy on first use)."""
    copy = tmp_path / "three_months"
    shutil.copytree(three_months_once, copy, symlinks=True)
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(copy / "project" / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(copy / "dagster_home"))
    return copy / "project" / "data"


def _materialize(run_config=SMALL_RUN, raise_on_error=True, tags=None):
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [training.training_set, training.delay_model, evaluation.model_evaluation, serving.champion_model],
            instance=instance,
            resources=resources_for("local"),
            run_config=run_config,
            raise_on_error=raise_on_error,
            tags=tags,
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
    assert model["training_curve"].value.startswith("![training curve](data:image/png;base64,")

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
    assert check.check_name == "promotion_gate" and check.passed
    assert "calibration" in metadata["calibration"].value and "data:image/png;base64," in metadata["calibration"].value


def test_the_gate_stops_a_model_below_the_minimum(three_months):
    config = {"ops": {**SMALL_RUN["ops"], "model_evaluation": {"config": {"min_roc_auc": 0.99}}}}
    result = _materialize(config, raise_on_error=False)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["min_roc_auc"].value == 0.99
    assert not result.success  # blocking: nothing downstream of the evaluation runs


WEAK_MODEL = {"hidden": [2], "max_epochs": 1, "batch_size": 4096, "learning_rate": 0.00001}


def _weak_run(seed=13):
    ops = {**SMALL_RUN["ops"], "delay_model": {"config": {**WEAK_MODEL, "seed": seed}}}
    return {"ops": {**ops, "model_evaluation": {"config": {"min_roc_auc": 0.0}}}}


def _predict(month="2013-03"):
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [serving.flight_delay_predictions], instance=instance, resources=resources_for("local"), partition_key=month
        )
    return result.asset_materializations_for_node("flight_delay_predictions")[0].metadata


def _warehouse(data_dir):
    return duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)


def test_lifecycle_promote_refuse_shadow_score_and_roll_back(three_months, capsys):
    champion = _materialize(tags={TRIGGER_TAG: "scheduled"}).asset_materializations_for_node("champion_model")[0]
    first = champion.metadata["champion_version"].value
    assert champion.metadata["promotion_reason"].value == "scheduled" and first.endswith(".dir")

    # A weak challenger is registered but refused against the champion on the same held-out rows.
    refused = _materialize(_weak_run(), raise_on_error=False)
    [gate] = refused.get_asset_check_evaluations()
    evaluated = refused.asset_materializations_for_node("model_evaluation")[0].metadata
    assert not gate.passed and "worse than the champion's" in gate.description
    assert evaluated["vs_champion/champion_roc_auc"].value > evaluated["roc_auc"].value
    assert evaluated["vs_champion/ci_high"].value < 0  # the paired interval says the challenger is worse
    assert not refused.asset_materializations_for_node("champion_model")
    weak = evaluated["model_version"].value

    # Predictions carry the champion's version; the refused challenger scores in its shadow.
    predictions = _predict()
    assert predictions["model_version"].value == first and predictions["challenger_version"].value == weak
    assert predictions["dagster/row_count"].value == 28_834  # every flight of March, cancelled ones too
    assert predictions["shadow/champion_roc_auc"].value > predictions["shadow/challenger_roc_auc"].value
    with _warehouse(three_months) as con:
        versions, shadow_nulls = con.execute(
            "SELECT list(DISTINCT model_version), count(*) FILTER (challenger_delay_probability IS NULL) "
            "FROM flight_delay_predictions"
        ).fetchone()
    assert versions == [first] and shadow_nulls == 0

    # A better model is promoted by drift; rollback brings back the first, from the DVC remote, cache lost.
    better = _materialize(tags={TRIGGER_TAG: "drift"}, run_config=_seeded(7)).asset_materializations_for_node(
        "champion_model"
    )[0]
    second = better.metadata["champion_version"].value
    assert second != first and better.metadata["promotion_reason"].value == "drift"
    shutil.rmtree(three_months.parent / ".dvc" / "cache")
    shutil.rmtree(three_months / "versions" / ".restore")
    assert main(["rollback"]) == 0
    assert f"champion rolled back to {first}" in capsys.readouterr().out
    assert load_model(three_months / "versions" / ".restore" / first / "delay_model").manifest["window"]
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    assert latest.metadata["champion_version"].value == first and latest.metadata["previous_version"].value == "none"
    assert _predict()["model_version"].value == first

    assert main(["promote", second[:10], "--note", "rolled forward"]) == 0
    assert main(["promote", weak]) == 1
    assert "failed its gate" in capsys.readouterr().err
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert f"{second:<37} 2013-03" in listing and listing.count("*") == 1 and "failed" in listing


def _seeded(seed):
    return {
        "ops": {
            **SMALL_RUN["ops"],
            "delay_model": {"config": {**SMALL_RUN["ops"]["delay_model"]["config"], "seed": seed}},
        }
    }


def test_scoring_needs_a_champion(three_months):
    with pytest.raises(dg.Failure, match="no champion model yet"):
        _predict()
