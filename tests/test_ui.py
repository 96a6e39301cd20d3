"""`dagster dev`, as `make run` starts it, serves every group, asset and sensor."""

import pytest
from dagster_dev import dagster_dev as run_dagster_dev
from dagster_dev import graphql

pytestmark = pytest.mark.integration

QUERY = "{ assetNodes { assetKey { path } groupName isPartitioned } }"


@pytest.fixture
def dagster_dev(tmp_path, monkeypatch):
    # An empty landing zone: the running sensors find nothing to launch while the UI is queried.
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    with run_dagster_dev(tmp_path / "dagster_home") as port:
        yield port


def test_the_ui_serves_every_asset_in_its_group(dagster_dev):
    nodes = graphql(dagster_dev, QUERY)["data"]["assetNodes"]
    groups = {"/".join(node["assetKey"]["path"]): node["groupName"] for node in nodes}
    assert set(groups.values()) == {"ingestion", "validation", "features", "training", "serving", "monitoring"}
    assert {name for name, group in groups.items() if group == "features"} == {"flight_features"}
    assert {name for name, group in groups.items() if group == "serving"} == {
        "champion_model",
        "flight_delay_predictions",
    }
    assert {name for name, group in groups.items() if group == "monitoring"} == {
        "feature_drift",
        "prediction_drift",
        "model_performance",
    }
    unpartitioned = {"/".join(node["assetKey"]["path"]) for node in nodes if not node["isPartitioned"]}
    assert len(groups) == 18
    assert unpartitioned == {
        "airlines",
        "airports",
        "planes",
        "training_set",
        "delay_model",
        "model_evaluation",
        "champion_model",
    }


def test_the_sensors_are_served_running_with_their_descriptions(dagster_dev):
    query = (
        '{ sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: '
        '"mlplatform"}) { ... on Sensors { results { name description sensorState { status } } } } }'
    )
    sensors = graphql(dagster_dev, query)["data"]["sensorsOrError"]["results"]
    by_name = {sensor["name"]: sensor for sensor in sensors}
    assert set(by_name) == {
        "landing_sensor",
        "drift_retrain_sensor",
        "run_failure_alert_sensor",
        "follow_new_data_sensor",
    }
    assert all(sensor["sensorState"]["status"] == "RUNNING" and sensor["description"] for sensor in sensors)
