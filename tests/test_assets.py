"""The Dagster layer, run for real: dg.materialize against ephemeral instances and temp data folders."""

import json

import dagster as dg
import pytest

from mlplatform.assets import features, ingestion, validation
from mlplatform.definitions import build_definitions
from mlplatform.resources import resources_for

MONTHLY_ASSETS = [
    ingestion.raw_flights,
    ingestion.raw_weather,
    validation.validate_flights,
    validation.validate_weather,
    features.flight_features,
]
REFERENCE_ASSETS = [ingestion.airlines, ingestion.airports, ingestion.planes]


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"python_logs": {"managed_python_loggers": ["mlplatform"]}}) as test_instance:
        yield test_instance


def materialize_month(instance, month, run_config=None, raise_on_error=True):
    return dg.materialize(
        [*MONTHLY_ASSETS, *REFERENCE_ASSETS],
        selection=MONTHLY_ASSETS,
        partition_key=month,
        instance=instance,
        resources=resources_for("local"),
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


@pytest.fixture
def with_reference(data_dir, instance):
    dg.materialize(REFERENCE_ASSETS, instance=instance, resources=resources_for("local"))
    return instance


def _metadata(result, asset):
    return result.asset_materializations_for_node(asset)[0].metadata


def _checks(result):
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def test_a_month_flows_from_landing_file_to_features(with_reference):
    result = materialize_month(with_reference, "2013-02")
    assert result.success
    materialized = {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert materialized["raw_flights"]["dagster/row_count"].value == 24_951
    assert materialized["clean_weather"]["dagster/row_count"].value == 2_009
    assert materialized["weather_quarantine"]["dagster/row_count"].value == 1
    assert materialized["flight_features"]["dagster/row_count"].value == 24_951
    schema = materialized["clean_flights"]["dagster/column_schema"].value
    dep_time = next(column for column in schema.columns if column.name == "dep_time")
    assert dep_time.type == "BIGINT" and dep_time.constraints.nullable and "cancelled" in dep_time.description
    lineage = materialized["flight_features"]["dagster/column_lineage"].value
    assert dg.TableColumnDep(asset_key=dg.AssetKey("planes"), column_name="year") in lineage.deps_by_column["plane_age"]
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    assert len(_checks(result)) == 10


def test_rematerializing_a_month_gives_the_same_rows_and_hash(with_reference):
    first = materialize_month(with_reference, "2013-01")
    second = materialize_month(with_reference, "2013-01")
    for asset in ("raw_flights", "clean_flights", "flight_features"):
        before = {e.asset_key.to_user_string(): e for e in first.get_asset_materialization_events()}[asset]
        after = {e.asset_key.to_user_string(): e for e in second.get_asset_materialization_events()}[asset]
        meta_before = before.step_materialization_data.materialization.metadata
        meta_after = after.step_materialization_data.materialization.metadata
        assert meta_after["dagster/row_count"] == meta_before["dagster/row_count"]
        assert meta_after["content_hash"] == meta_before["content_hash"]


def _break_rows(path, how_many, replace):
    lines = path.read_text().splitlines()
    lines[1 : how_many + 1] = [replace(line) for line in lines[1 : how_many + 1]]
    path.write_text("\n".join(lines) + "\n")


def test_too_much_quarantine_blocks_the_features(with_reference, data_dir):
    # One row in ten gets an unknown origin airport: over the 1% limit.
    _break_rows(data_dir / "landing" / "flights" / "2013-03.csv", 3000, lambda line: line.replace(",EWR,", ",XXX,"))
    result = materialize_month(with_reference, "2013-03", raise_on_error=False)
    share = _checks(result)[("clean_flights", "quarantine_share")]
    assert not share.passed and share.metadata["quarantine_share"].value > 0.01
    assert "origin:isin" in share.metadata["most_common_failure"].value
    assert not result.asset_materializations_for_node("flight_features")
    # Conservation still holds: nothing was dropped.
    assert _checks(result)[("clean_flights", "row_conservation")].passed


def test_a_looser_limit_lets_the_same_month_through(with_reference, data_dir):
    _break_rows(data_dir / "landing" / "flights" / "2013-03.csv", 3000, lambda line: line.replace(",EWR,", ",XXX,"))
    config = {"ops": {"validate_flights": {"config": {"max_quarantine_share": 0.2}}}}
    result = materialize_month(with_reference, "2013-03", run_config=config)
    assert result.success and result.asset_materializations_for_node("flight_features")


def test_an_unparseable_file_fails_the_partition_and_keeps_what_was_loaded(with_reference, data_dir):
    assert materialize_month(with_reference, "2013-04").success
    landing_file = data_dir / "landing" / "flights" / "2013-04.csv"
    _break_rows(landing_file, 2, lambda line: line.replace("2013,4,", "2013,April,", 1))
    result = materialize_month(with_reference, "2013-04", raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.error.cause.message
    assert str(landing_file) in message and "line 2" in message and '"month"' in message
    with resources_for("local")["duckdb"].get_connection() as con:
        rows = con.execute("SELECT count(*) FROM raw_flights WHERE partition_month = '2013-04'").fetchall()[0][0]
    assert rows == 28_330


def test_volume_check_warns_on_a_collapsed_month(with_reference, data_dir):
    materialize_month(with_reference, "2013-01")
    weather = data_dir / "landing" / "weather" / "2013-02.csv"
    lines = weather.read_text().splitlines()
    weather.write_text("\n".join(lines[:200]) + "\n")
    result = materialize_month(with_reference, "2013-02")
    volume = _checks(result)[("raw_weather", "volume_vs_trailing_months")]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
    assert result.success  # a warning does not stop the month


def test_a_bad_reference_row_fails_its_blocking_check(data_dir, instance):
    planes = data_dir / "landing" / "reference" / "planes.csv"
    lines = planes.read_text().splitlines()
    planes.write_text("\n".join([*lines, lines[1]]) + "\n")
    result = dg.materialize(REFERENCE_ASSETS, instance=instance, resources=resources_for("local"), raise_on_error=False)
    contract = _checks(result)[("planes", "contract")]
    assert not contract.passed and "natural_key:duplicate" in contract.metadata["violations"].value
    assert not result.success


def test_log_lines_carry_run_asset_and_partition_and_reach_the_run_log(with_reference):
    result = materialize_month(with_reference, "2013-05")
    lines = [
        json.loads(entry.user_message)
        for entry in with_reference.all_logs(result.run_id)
        if entry.user_message.startswith("{")
    ]
    events = {line["event"]: line for line in lines}
    assert {"landing file loaded", "partition validated", "features built"} <= set(events)
    for line in lines:
        assert line["run_id"] == result.run_id and line["partition"] == "2013-05" and line["asset"]
    assert events["features built"]["asset"] == "flight_features"


def test_definitions_show_every_asset_in_its_group():
    defs = build_definitions("local")
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw_flights": "ingestion",
        "raw_weather": "ingestion",
        "airlines": "ingestion",
        "airports": "ingestion",
        "planes": "ingestion",
        "clean_flights": "validation",
        "flights_quarantine": "validation",
        "clean_weather": "validation",
        "weather_quarantine": "validation",
        "flight_features": "features",
        "training_set": "training",
        "delay_model": "training",
        "model_evaluation": "training",
        "champion_model": "serving",
        "flight_delay_predictions": "serving",
        "feature_drift": "monitoring",
        "prediction_drift": "monitoring",
        "model_performance": "monitoring",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and node.owners == ["team:data-platform"] and node.kinds
        [source] = node.metadata["dagster/code_references"].code_references  # "View source" in the UI
        assert source.file_path.endswith(".py") and source.line_number > 0
        # Whatever touches the warehouse shares the one-slot duckdb pool; the model step only calls DVC.
        assert node.pools == ({"dvc"} if key.to_user_string() == "delay_model" else {"duckdb"}), key
    followers = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition}
    assert followers == {"flight_delay_predictions", "feature_drift", "prediction_drift", "model_performance"}


def test_blocking_checks_are_declared_blocking():
    specs = {spec.name: spec for spec in validation.validate_flights.check_specs}
    assert all(specs[name].blocking for name in ("row_conservation", "natural_key_unique", "quarantine_share"))


def test_production_resources_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLATFORM_DUCKDB_DATABASE", str(tmp_path / "prod.duckdb"))
    monkeypatch.setenv("MLPLATFORM_LANDING_DIR", str(tmp_path / "landing"))
    defs = build_definitions("production")
    assert defs.resolve_job_def("monthly_pipeline").required_resource_keys >= {"duckdb", "landing"}
    with pytest.raises(ValueError, match="MLPLATFORM_ENV"):
        resources_for("staging")
