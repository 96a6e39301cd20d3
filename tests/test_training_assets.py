"""A dataset's training_set, model, model_evaluation and champion_model materialized for real, on top of three
materialized flights periods; and two datasets training in one instance."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml
from conftest import git_project

from mlplatform.cli import main
from mlplatform.data.versioning import file_md5
from mlplatform.datasets import all_datasets, get_dataset
from mlplatform.definitions import build_definitions
from mlplatform.ml import registry
from mlplatform.ml.artifact import artifact_folder
from mlplatform.ml.model import load_model
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.serving import TRIGGER_TAG
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.jobs import TRAINING_TAG
from mlplatform.orchestration.resources import resources_for
from mlplatform.orchestration.sensors.retraining import period_signals

ROOT = Path(__file__).parents[1]
SMALL_MODEL = {"hidden": [32], "max_epochs": 2, "batch_size": 256, "learning_rate": 0.003}
SMALL_RUN = {
    "ops": {
        "flights__training_set": {"config": {"target_period": "2013-03", "window_periods": 2}},
        "flights__model": {"config": SMALL_MODEL},
    }
}
TRAINING = ["training_set", "model", "model_evaluation", "champion_model"]
RETRAIN = TRAINING[1:]  # on the training set already built


@pytest.fixture(scope="module")
def three_periods_once(seeded_landing, tmp_path_factory):
    """A project (git repository, DVC, warehouse) and Dagster home with flights 2013-01..03 materialized, once."""
    root = tmp_path_factory.mktemp("three_periods")
    project = git_project(root / "project")
    shutil.copytree(seeded_landing, project / "data" / "landing")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPLATFORM_DATA_DIR", str(project / "data"))
        patch.setenv("DAGSTER_HOME", str(home))
        assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01..2013-03"]) == 0
    return root


@pytest.fixture
def three_periods(three_periods_once, tmp_path, monkeypatch):
    """A private copy of ``three_periods_once`` (its DVC remote is re-pointed at the copy on first use)."""
    copy = tmp_path / "three_periods"
    shutil.copytree(three_periods_once, copy, symlinks=True)
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(copy / "project" / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(copy / "dagster_home"))
    return copy / "project" / "data"


@cache
def _assets(name: str) -> list[dg.AssetsDefinition]:
    return list(dataset_definitions(all_datasets()[name]).assets)


def _materialize(run_config=SMALL_RUN, raise_on_error=True, tags=None, names=TRAINING, partition=None):
    """``names`` of the flights assets materialized in one run, with the run config of the steps selected."""
    flights = get_dataset("flights")
    if run_config:
        ops = {op: config for op, config in run_config["ops"].items() if op.split("__")[1] in names}
        run_config = {"ops": ops}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            _assets("flights"),
            selection=[asset_key(flights, name) for name in names],
            instance=instance,
            resources=resources_for("local"),
            run_config=run_config,
            raise_on_error=raise_on_error,
            tags=tags,
            partition_key=partition,
        )


def _metadata(result, name):
    return result.asset_materializations_for_node(f"flights__{name}")[0].metadata


def test_the_model_is_trained_on_the_versioned_training_set_and_evaluated(three_periods):
    result = _materialize()
    window = _metadata(result, "training_set")
    assert window["window"].value == "2013-01..2013-02" and window["target_period"].value == "2013-03"
    assert window["train_rows"].value == 27_004 + 24_951 and window["holdout_rows"].value == 28_834
    assert set(window["dvc/inputs"].value) == {f"flights/features[2013-0{m}]" for m in (1, 2, 3)}

    model = _metadata(result, "model")
    assert model["holdout_roc_auc"].value > 0.65 and model["model_name"].value == "flights_delay"
    assert model["training_data_version"].value == window["dvc/md5"].value
    assert model["epochs_run"].value <= 2 and "validation_loss" in model["training_curve"].value
    assert model["training_curve"].value.startswith("![training curve](data:image/png;base64,")
    assert model["dvc/path"].value == "data/versions/flights/model"

    artifact = load_model(three_periods / "versions" / "flights" / "model")
    assert artifact.manifest["training_data_version"] == window["dvc/md5"].value
    assert artifact.manifest["metrics"]["holdout_roc_auc"] == pytest.approx(model["holdout_roc_auc"].value)
    assert artifact.manifest["model"] == "flights_delay" and artifact.manifest["dataset"] == "flights"
    assert {"torch", "polars", "duckdb"} <= set(artifact.manifest["libraries"])
    # Permutation importance on the held-out month, for every feature, kept with the model for the retrain signal.
    importance = artifact.manifest["feature_importance"]
    flights = get_dataset("flights").model
    assert set(importance) == {*flights.categorical, *flights.numeric}
    assert all(value >= 0 for value in importance.values())
    assert max(importance.values()) > 0.01  # the model leans on something
    assert "auc_lost" in model["feature_importance"].value
    holdout = pl.read_parquet(three_periods / "versions" / "flights" / "training_set" / "training_set.parquet")
    assert artifact.predict(holdout.head(10)).shape == (10,)

    # The evaluation: against the baseline, with a model card and a passed gate.
    evaluation = _metadata(result, "model_evaluation")
    assert evaluation["roc_auc"].value == pytest.approx(model["holdout_roc_auc"].value)
    assert evaluation["model_version"].value == model["dvc/md5"].value
    assert 0.5 < evaluation["baseline_roc_auc"].value < evaluation["roc_auc"].value
    assert {"pr_auc", "log_loss", "brier", "calibration_error"} <= set(evaluation)
    card = evaluation["model_card"].value
    assert card.startswith(f"# flights_delay {model['dvc/md5'].value}") and "## By carrier" in card
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "promotion_gate" and check.passed
    assert "data:image/png;base64," in evaluation["calibration"].value

    # Same data, config and seed: the same model, to the byte.
    again = _metadata(_materialize(names=["model"]), "model")
    assert again["dvc/md5"].value == model["dvc/md5"].value
    assert again["holdout_roc_auc"].value == model["holdout_roc_auc"].value


def test_a_window_with_missing_periods_fails_with_what_to_do(three_periods):
    config = {"ops": {"flights__training_set": {"config": {"target_period": "2013-06", "window_periods": 2}}}}
    with pytest.raises(dg.Failure, match=r"no rows for \['2013-04', '2013-05', '2013-06'\]"):
        _materialize(config)


def test_a_target_period_of_the_wrong_grain_is_refused(three_periods):
    config = {"ops": {"flights__training_set": {"config": {"target_period": "2013", "window_periods": 2}}}}
    with pytest.raises(dg.Failure, match="target_period: expected a monthly period like 2013-01"):
        _materialize(config)


WEAK_MODEL = {"hidden": [2], "max_epochs": 1, "batch_size": 4096, "learning_rate": 0.00001}


def test_the_gate_stops_a_model_below_the_minimum(three_periods):
    ops = {**SMALL_RUN["ops"], "flights__model": {"config": WEAK_MODEL}}
    config = {"ops": {**ops, "flights__model_evaluation": {"config": {"min_roc_auc": 0.99}}}}
    result = _materialize(config, raise_on_error=False)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["min_roc_auc"].value == 0.99
    assert not result.success  # blocking: nothing downstream of the evaluation runs
    assert not result.asset_materializations_for_node("flights__champion_model")


def _weak_run():
    return {
        "ops": {
            "flights__model": {"config": WEAK_MODEL},
            "flights__model_evaluation": {"config": {"min_roc_auc": 0.0}},
        }
    }


def _seeded(seed):
    return {"ops": {"flights__model": {"config": {**SMALL_MODEL, "seed": seed}}}}


def _predict(period="2013-03"):
    return _metadata(_materialize(run_config=None, names=["predictions"], partition=period), "predictions")


def _warehouse(data_dir):
    return duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)


def test_lifecycle_promote_refuse_shadow_score_and_roll_back(three_periods, capsys):
    champion = _materialize(tags={TRIGGER_TAG: "scheduled"}).asset_materializations_for_node("flights__champion_model")
    first = champion[0].metadata["champion_version"].value
    assert champion[0].metadata["promotion_reason"].value == "scheduled" and first.endswith(".dir")

    # A weak challenger is registered but refused against the champion on the same held-out rows.
    refused = _materialize(_weak_run(), raise_on_error=False, names=RETRAIN)
    [gate] = refused.get_asset_check_evaluations()
    evaluated = _metadata(refused, "model_evaluation")
    assert not gate.passed and "worse than the champion's" in gate.description
    assert evaluated["vs_champion/champion_roc_auc"].value > evaluated["roc_auc"].value
    assert evaluated["vs_champion/ci_high"].value < 0  # the paired interval says the challenger is worse
    assert not refused.asset_materializations_for_node("flights__champion_model")
    weak = evaluated["model_version"].value

    # Predictions carry the champion's version; the refused challenger scores in its shadow.
    predictions = _predict()
    assert predictions["model_version"].value == first and predictions["challenger_version"].value == weak
    assert predictions["dagster/row_count"].value == 28_834  # every flight of March, cancelled ones too
    assert predictions["shadow/champion_roc_auc"].value > predictions["shadow/challenger_roc_auc"].value
    with _warehouse(three_periods) as con:
        versions, shadow_nulls = con.execute(
            "SELECT list(DISTINCT model_version), count(*) FILTER (challenger_probability IS NULL) "
            "FROM flights.predictions"
        ).fetchone()
    assert versions == [first] and shadow_nulls == 0

    # A better model is promoted by drift; rollback brings back the first, from the DVC remote, cache lost.
    whole = {"flights__champion_model": {"config": {"steps": [1.0]}}}  # no rollout (tests/test_rollout.py)
    better = _materialize(
        tags={TRIGGER_TAG: "drift"}, run_config={"ops": {**_seeded(7)["ops"], **whole}}, names=RETRAIN
    )
    promoted = better.asset_materializations_for_node("flights__champion_model")[0].metadata
    second = promoted["champion_version"].value
    assert second != first and promoted["promotion_reason"].value == "drift"
    shutil.rmtree(three_periods.parent / ".dvc" / "cache")
    shutil.rmtree(three_periods / "versions" / ".restore")
    assert main(["rollback", "--dataset", "flights"]) == 0
    assert f"flights_delay: champion rolled back to {first}" in capsys.readouterr().out
    assert load_model(three_periods / "versions" / ".restore" / first / "model").manifest["window"]
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey(["flights", "champion_model"]))
    metadata = latest.asset_materialization.metadata
    assert metadata["champion_version"].value == first and metadata["previous_version"].value == "none"
    assert _predict()["model_version"].value == first

    assert main(["promote", second[:10], "--note", "rolled forward"]) == 0
    assert main(["promote", weak]) == 1
    assert "failed its gate" in capsys.readouterr().err
    assert main(["models", "--dataset", "flights"]) == 0
    listing = capsys.readouterr().out
    assert f"{second:<37} 2013-03" in listing and listing.count("*") == 1 and "failed" in listing


def test_periods_run_together_are_scored_and_monitored_each_on_its_own(three_periods):
    """A range of periods in one run (what a backfill or the first champion's waiting periods get): every asset
    downstream of the champion records each period's own figures, and the retrain sensor reads them per period."""
    _materialize()  # a champion held out on 2013-03, trained on 2013-01..02
    downstream = ["predictions", "rollout", "feature_drift", "prediction_drift", "model_performance"]
    span = {"dagster/asset_partition_range_start": "2013-01", "dagster/asset_partition_range_end": "2013-03"}
    result = _materialize(run_config=None, names=downstream, tags=span)

    def by_period(name):
        events = result.asset_materializations_for_node(f"flights__{name}")
        return {event.partition: event.metadata for event in events if event.asset_key.path[-1] == name}

    predictions = by_period("predictions")
    rows = {period: metadata["dagster/row_count"].value for period, metadata in predictions.items()}
    assert rows == {"2013-01": 27_004, "2013-02": 24_951, "2013-03": 28_834}
    with _warehouse(three_periods) as con:
        assert dict(con.execute("SELECT period, count(*) FROM flights.predictions GROUP BY 1").fetchall()) == rows
    versions = [metadata["dvc/md5"].value for metadata in predictions.values()]
    inputs = {period: set(metadata["dvc/inputs"].value) for period, metadata in predictions.items()}
    assert len(set(versions)) == 3 and inputs == {p: {f"flights/features[{p}]", "champion_model"} for p in rows}

    performance = by_period("model_performance")
    held_out = performance["2013-03"]["holdout_roc_auc"].value
    assert performance["2013-03"]["roc_auc"].value == pytest.approx(held_out, abs=1e-4)
    assert all(performance[period]["roc_auc"].value > held_out for period in ("2013-01", "2013-02"))  # learnt on
    drift = by_period("feature_drift")
    assert {period: metadata["champion_target_period"].value for period, metadata in drift.items()} == dict.fromkeys(
        rows, "2013-03"
    )
    assert set(by_period("prediction_drift")) == set(rows)
    assert {metadata["decision"].value for metadata in by_period("rollout").values()} == {"no rollout"}

    # One check result per asset for the run, naming the periods it covers.
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    drifted = [period for period, metadata in drift.items() if metadata["dataset_drift"].value]
    assert checks["no_dataset_drift"].metadata["failed_periods"].value == drifted
    assert checks["no_dataset_drift"].passed == (not drifted)
    tolerance = checks["within_auc_tolerance"]
    assert tolerance.passed and all(f"{period}: ROC AUC" in tolerance.description for period in rows)

    with dg.DagsterInstance.get() as instance:
        signals = period_signals(instance, get_dataset("flights"), "2013-02")
    assert signals.auc_drop == pytest.approx(held_out - performance["2013-02"]["roc_auc"].value)
    assert signals.drifted_share == drift["2013-02"]["drifted_share"].value


def test_scoring_needs_a_champion(three_periods):
    with pytest.raises(dg.Failure, match="flights_delay has no champion model yet: run the flights_training job"):
        _predict()


def test_two_datasets_train_in_one_instance_without_sharing_files(three_periods):
    """flights and employment train in the same instance and warehouse: each its own training set, artifact
    and champion, and neither run touches the other's files."""
    defs = build_definitions("local")
    configs = {"flights": SMALL_RUN, "employment": {"ops": {"employment__model": {"config": {"max_epochs": 2}}}}}
    with dg.DagsterInstance.get() as instance:
        for year in ("2015", "2016"):  # the employment model is trained on 2015 and evaluated on 2016
            assert (
                defs.resolve_job_def("employment_period_pipeline")
                .execute_in_process(instance=instance, partition_key=year)
                .success
            )
        runs = {
            name: defs.resolve_job_def(f"{name}_training").execute_in_process(instance=instance, run_config=config)
            for name, config in configs.items()
        }
        assert all(run.success for run in runs.values())
        # Each run is tagged with its dataset: the run queue allows one training run per dataset at once, so the
        # two datasets' runs may train side by side.
        assert {name: instance.get_run_by_id(run.run_id).tags[TRAINING_TAG] for name, run in runs.items()} == {
            "flights": "flights",
            "employment": "employment",
        }
    limits = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": TRAINING_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits

    versions = three_periods / "versions"
    repo = resources_for("local")["dvc"].repo()
    with resources_for("local")["duckdb"].get_connection() as con:
        champions = {name: registry.champion(con, get_dataset(name).model.name) for name in configs}
    assert champions["flights"].version != champions["employment"].version
    for name, run in runs.items():
        model = run.asset_materializations_for_node(f"{name}__model")[0].metadata
        training_set = run.asset_materializations_for_node(f"{name}__training_set")[0].metadata
        assert model["dvc/path"].value == f"data/versions/{name}/model"
        assert training_set["dvc/path"].value == f"data/versions/{name}/training_set/training_set.parquet"
        assert champions[name].version == model["dvc/md5"].value
        # Each champion's artifact is still its own, trained on its own training set's bytes, which are still there.
        artifact = load_model(artifact_folder(repo, champions[name].version))
        assert artifact.manifest["dataset"] == name and artifact.manifest["model"] == get_dataset(name).model.name
        assert artifact.manifest["training_data_version"] == training_set["dvc/md5"].value
        assert file_md5(versions / name / "training_set" / "training_set.parquet") == training_set["dvc/md5"].value
        assert load_model(versions / name / "model").manifest["dataset"] == name
