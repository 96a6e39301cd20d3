"""The Dagster layer, run for real: each dataset's assets (from its folder's declaration) materialized with
dg.materialize against test instances and temp data folders."""

from __future__ import annotations

import json
from functools import cache

import dagster as dg
import pytest
from conftest import seed_periods

from mlplatform.data.landing import period_file
from mlplatform.datasets import Dataset, all_datasets
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.definitions import build_definitions
from mlplatform.orchestration.assets.common import STAGE_TAG, asset_key
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.resources import resources_for

# Row counts of each dataset's second seed period, asset by asset.
SECOND_PERIOD_ROWS = {
    "flights": {  # 2013-02: one weather reading breaks the contract and is quarantined, not dropped
        "raw_flights": 24_951,
        "clean_flights": 24_951,
        "flights_quarantine": 0,
        "raw_weather": 2_010,
        "clean_weather": 2_009,
        "weather_quarantine": 1,
        "features": 24_951,
    },
    "employment": {  # 2016
        "raw_people": 69_126,
        "clean_people": 69_126,
        "people_quarantine": 0,
        "features": 69_126,
    },
}


@cache
def assets_of(name: str) -> list[dg.AssetsDefinition]:
    return list(dataset_definitions(all_datasets()[name]).assets)


def period_keys(dataset: Dataset) -> list[dg.AssetKey]:
    """What the dataset's period pipeline materializes: raw, clean and quarantined rows of each source, features."""
    tables = [table(source) for source in dataset.sources for table in (raw_table, clean_table, quarantine_table)]
    return [asset_key(dataset, name) for name in [*tables, FEATURES_TABLE]]


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"python_logs": {"managed_python_loggers": ["mlplatform"]}}) as test_instance:
        yield test_instance


def materialize(instance, dataset, period=None, selection=None, run_config=None, raise_on_error=True):
    """``selection`` (asset names; default the period pipeline's assets) of one period of ``dataset``."""
    keys = [asset_key(dataset, name) for name in selection] if selection else period_keys(dataset)
    return dg.materialize(
        assets_of(dataset.name),
        selection=keys,
        partition_key=period,
        instance=instance,
        resources=resources_for("local"),
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


@pytest.fixture
def with_reference(data_dir, instance):
    """The instance, with every dataset's reference tables loaded (flights: airlines, airports, planes)."""
    for dataset in all_datasets().values():
        if dataset.reference:
            materialize(instance, dataset, selection=dataset.reference)
    return instance


def _metadata(result) -> dict[str, dict]:
    return {
        event.asset_key.path[-1]: event.step_materialization_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }


def _checks(result):
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def _data_rows(path) -> int:
    return len(path.read_text().splitlines()) - 1


def test_a_period_flows_from_landing_file_to_features(dataset, data_dir, with_reference):
    period = seed_periods(dataset)[1]
    result = materialize(with_reference, dataset, period)
    assert result.success
    materialized = _metadata(result)
    assert {key.path[0] for key in (e.asset_key for e in result.get_asset_materialization_events())} == {dataset.name}
    rows = {name: metadata["dagster/row_count"].value for name, metadata in materialized.items()}
    assert rows == SECOND_PERIOD_ROWS[dataset.name]
    for source in dataset.sources:
        # Conservation, from the landing file to the tables: every row is clean or quarantined, none dropped.
        landed = _data_rows(period_file(data_dir / "landing", dataset, source, period))
        assert rows[raw_table(source)] == rows[clean_table(source)] + rows[quarantine_table(source)] == landed
        # The clean table's schema carries the contract: nullable columns say why they may be null.
        schema = materialized[clean_table(source)]["dagster/column_schema"].value
        columns = {column.name: column for column in schema.columns}
        contract = dataset.contracts[source]
        typed = {name: column.type for name, column in columns.items() if name in contract.sql_types}
        assert typed == contract.sql_types
        for name, spec in contract.fields.items():
            if spec.null_reason:
                assert columns[name].constraints.nullable and spec.null_reason in columns[name].description
    # Column lineage, as declared: a feature points at the clean or reference columns it is computed from.
    lineage = materialized[FEATURES_TABLE]["dagster/column_lineage"].value.deps_by_column
    for column, sources in dataset.declaration.features.lineage.items():
        expected = []
        for source in sources:
            table, name = source.split(".")
            upstream = clean_table(table) if table in dataset.sources else table
            expected.append(dg.TableColumnDep(asset_key=asset_key(dataset, upstream), column_name=name))
        assert sorted(lineage[column], key=str) == sorted(expected, key=str), column
    checks = _checks(result)
    assert all(evaluation.passed for evaluation in checks.values())
    # Raw: volume and null shares; clean: conservation, unique natural key, quarantine share.
    assert len(checks) == 5 * len(dataset.sources)

    # Each log line carries the run, the asset and the partition, and reaches the run's log.
    lines = [
        json.loads(entry.user_message)
        for entry in with_reference.all_logs(result.run_id)
        if entry.user_message.startswith("{")
    ]
    events = {line["event"]: line for line in lines}
    assert {"landing file loaded", "partition validated", "features built"} <= set(events)
    for line in lines:
        assert line["run_id"] == result.run_id and line["partition"] == period and line["asset"]
    assert events["features built"]["asset"] == f"{dataset.name}/features"


def test_rematerializing_a_period_gives_the_same_rows_and_hash(flights, with_reference, data_dir):
    flights_file = data_dir / "landing" / "flights" / "flights" / "2013-01.csv"
    flights_file.write_text("\n".join(flights_file.read_text().splitlines()[:5_001]) + "\n")  # a sample is enough
    first, second = (_metadata(materialize(with_reference, flights, "2013-01")) for _ in range(2))
    for asset in ("raw_flights", "clean_flights", "features"):
        assert second[asset]["dagster/row_count"] == first[asset]["dagster/row_count"]
        assert second[asset]["content_hash"] == first[asset]["content_hash"]


def _break_rows(path, how_many, replace):
    lines = path.read_text().splitlines()
    lines[1 : how_many + 1] = [replace(line) for line in lines[1 : how_many + 1]]
    path.write_text("\n".join(lines) + "\n")


def _unknown_origin(data_dir):
    """One March flight in ten gets an unknown origin airport: over the 1% limit."""
    path = data_dir / "landing" / "flights" / "flights" / "2013-03.csv"
    _break_rows(path, 3000, lambda line: line.replace(",EWR,", ",XXX,"))


def test_too_much_quarantine_blocks_the_features(flights, with_reference, data_dir):
    _unknown_origin(data_dir)
    result = materialize(with_reference, flights, "2013-03", raise_on_error=False)
    share = _checks(result)[("flights/clean_flights", "quarantine_share")]
    assert not share.passed and share.metadata["quarantine_share"].value > 0.01
    assert "origin:isin" in share.metadata["most_common_failure"].value
    assert not result.asset_materializations_for_node("flights__features")
    # Conservation still holds: nothing was dropped.
    assert _checks(result)[("flights/clean_flights", "row_conservation")].passed


def test_a_looser_limit_lets_the_same_period_through(flights, with_reference, data_dir):
    _unknown_origin(data_dir)
    config = {"ops": {"flights__validate_flights": {"config": {"max_quarantine_share": 0.2}}}}
    result = materialize(with_reference, flights, "2013-03", run_config=config)
    assert result.success and result.asset_materializations_for_node("flights__features")
    rows = {name: metadata["dagster/row_count"].value for name, metadata in _metadata(result).items()}
    assert 0.01 < rows["flights_quarantine"] / rows["raw_flights"] < 0.2


def test_a_run_config_outside_the_declared_bounds_is_refused(flights, with_reference):
    config = {"ops": {"flights__validate_flights": {"config": {"max_quarantine_share": 1.5}}}}
    validation = ["clean_flights", "flights_quarantine"]
    result = materialize(with_reference, flights, "2013-03", validation, run_config=config, raise_on_error=False)
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "max_quarantine_share" in failure.step_failure_data.error.message


def test_a_bad_cell_quarantines_its_row_and_the_period_flows(flights, with_reference, data_dir):
    landing_file = data_dir / "landing" / "flights" / "flights" / "2013-04.csv"
    _break_rows(landing_file, 2, lambda line: line.replace("2013,4,", "2013,April,", 1))
    result = materialize(with_reference, flights, "2013-04")
    rows = {name: metadata["dagster/row_count"].value for name, metadata in _metadata(result).items()}
    assert (rows["raw_flights"], rows["clean_flights"], rows["flights_quarantine"]) == (28_330, 28_328, 2)
    assert _checks(result)[("flights/clean_flights", "row_conservation")].passed
    with resources_for("local")["duckdb"].get_connection() as con:
        quarantined = con.execute(
            "SELECT source_line, failed_checks, failures[1].raw_value FROM flights.flights_quarantine "
            "WHERE period = '2013-04' ORDER BY source_line"
        ).fetchall()
    assert quarantined == [(2, "month:type(BIGINT)", "April"), (3, "month:type(BIGINT)", "April")]


def test_a_file_wrong_as_a_whole_fails_with_one_line_and_keeps_what_was_loaded(flights, with_reference, data_dir):
    assert materialize(with_reference, flights, "2013-04", selection=["raw_flights"]).success
    landing_file = data_dir / "landing" / "flights" / "flights" / "2013-04.csv"
    landing_file.write_text(landing_file.read_text().replace(",", ";"))
    result = materialize(with_reference, flights, "2013-04", selection=["raw_flights"], raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure).step_failure_data
    description = failure.user_failure_data.description
    assert description.startswith(f"{landing_file}, line 1: fields are separated by ';', not ','")
    assert "\n" not in description and "Traceback" not in description and "duckdb" not in description.lower()
    assert failure.user_failure_data.metadata["file"].value == str(landing_file)
    # The same line in the run's log.
    logged = [
        json.loads(entry.user_message)
        for entry in with_reference.all_logs(result.run_id)
        if entry.user_message.startswith("{")
    ]
    assert {"event": "landing file refused", "error": description} in [
        {key: line[key] for key in ("event", "error") if key in line} for line in logged
    ]
    with resources_for("local")["duckdb"].get_connection() as con:
        rows = con.execute("SELECT count(*) FROM flights.raw_flights WHERE period = '2013-04'").fetchall()[0][0]
    assert rows == 28_330


def test_validation_without_its_reference_tables_says_what_to_run(flights, data_dir, instance):
    result = materialize(
        instance,
        flights,
        "2013-04",
        selection=["raw_flights", "clean_flights", "flights_quarantine"],
        raise_on_error=False,
    )
    failure = next(event for event in result.all_events if event.is_step_failure).step_failure_data
    assert failure.user_failure_data.description == (
        "flights.flights.carrier is checked against airlines.carrier, and the reference table flights.airlines is "
        "not loaded: run the flights_reference_data job first"
    )


def test_volume_check_warns_on_a_collapsed_period(flights, with_reference, data_dir):
    materialize(with_reference, flights, "2013-01", selection=["raw_weather"])
    weather = data_dir / "landing" / "flights" / "weather" / "2013-02.csv"
    weather.write_text("\n".join(weather.read_text().splitlines()[:200]) + "\n")
    result = materialize(with_reference, flights, "2013-02", selection=["raw_weather"])
    volume = _checks(result)[("flights/raw_weather", "volume_vs_trailing_periods")]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
    assert result.success  # a warning does not stop the period


def test_a_bad_reference_row_fails_its_blocking_check(flights, data_dir, instance):
    planes = data_dir / "landing" / "flights" / "reference" / "planes.csv"
    lines = planes.read_text().splitlines()
    planes.write_text("\n".join([*lines, lines[1]]) + "\n")
    result = materialize(instance, flights, selection=flights.reference, raise_on_error=False)
    contract = _checks(result)[("flights/planes", "contract")]
    assert not contract.passed and "natural_key:duplicate" in contract.metadata["violations"].value
    assert not result.success


STAGES = {
    "raw": "ingestion",
    "clean": "validation",
    "quarantine": "validation",
    "features": "features",
    "training_set": "training",
    "model": "training",
    "model_evaluation": "training",
    "champion_model": "serving",
    "predictions": "serving",
    "rollout": "serving",
    "feature_drift": "monitoring",
    "prediction_drift": "monitoring",
    "model_performance": "monitoring",
}


def _expected_stages(dataset: Dataset) -> dict[str, str]:
    sources = {
        table(source): STAGES[kind]
        for source in dataset.sources
        for kind, table in (("raw", raw_table), ("clean", clean_table), ("quarantine", quarantine_table))
    }
    fixed = {name: stage for name, stage in STAGES.items() if name not in ("raw", "clean", "quarantine")}
    return {**sources, **{table: "ingestion" for table in dataset.reference}, **fixed}


def test_definitions_show_every_asset_in_its_dataset_group_with_its_stage():
    defs = build_definitions("local")
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for dataset in all_datasets().values():
        stages = {key.path[1]: graph.get(key).tags[STAGE_TAG] for key in keys if key.path[0] == dataset.name}
        assert stages == _expected_stages(dataset), dataset.name
        assert {graph.get(key).group_name for key in keys if key.path[0] == dataset.name} == {dataset.name}
    for key in keys:
        node = graph.get(key)
        assert len(key.path) == 2 and node.description and node.owners == ["team:data-platform"] and node.kinds
        # "View source" in the UI: the Python factory that builds the asset and the dataset's declaration.
        code, declaration = node.metadata["dagster/code_references"].code_references
        assert code.file_path.endswith(".py") and code.line_number > 0
        assert declaration.file_path == str(all_datasets()[key.path[0]].folder / "defs.yaml")
        # Whatever touches the warehouse shares the one-slot duckdb pool; the model step only calls DVC.
        assert node.pools == ({"dvc"} if key.path[1] == "model" else {"duckdb"}), key
    followers = {key.to_user_string() for key in keys if graph.get(key).automation_condition}
    assert followers == {
        f"{name}/{asset}"
        for name in all_datasets()
        for asset in ("predictions", "rollout", "feature_drift", "prediction_drift", "model_performance")
    }


def test_blocking_checks_are_declared_blocking(dataset):
    for source in dataset.sources:
        key = asset_key(dataset, clean_table(source))
        [validate] = [assets for assets in assets_of(dataset.name) if key in assets.keys]
        specs = {spec.name: spec for spec in validate.check_specs if spec.asset_key == key}
        assert all(specs[name].blocking for name in ("row_conservation", "natural_key_unique", "quarantine_share"))


def test_production_resources_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLATFORM_LAKE_CATALOG", "dbname=lake host=127.0.0.1")
    monkeypatch.setenv("MLPLATFORM_LAKE_DATA_PATH", "s3://lake/data/")
    monkeypatch.setenv("MLPLATFORM_LANDING_DIR", str(tmp_path / "landing"))
    defs = build_definitions("production")
    for name in all_datasets():
        assert defs.resolve_job_def(f"{name}_period_pipeline").required_resource_keys >= {"duckdb", "landing", "dvc"}
    with pytest.raises(ValueError, match="MLPLATFORM_ENV"):
        resources_for("staging")
