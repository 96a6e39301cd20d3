"""`dagster dev`, as `make run` starts it, serves every dataset's assets and sensors."""

import pytest
from conftest import DATASETS
from dagster_dev import dagster_dev as run_dagster_dev
from dagster_dev import graphql

pytestmark = pytest.mark.integration

QUERY = "{ assetNodes { assetKey { path } groupName isPartitioned } }"
# What every dataset has, whatever its sources: the lifecycle from features to monitoring.
LIFECYCLE = {
    "features",
    "training_set",
    "model",
    "model_evaluation",
    "champion_model",
    "predictions",
    "rollout",
    "feature_drift",
    "prediction_drift",
    "model_performance",
}
UNPARTITIONED = {"training_set", "model", "model_evaluation", "champion_model"}


@pytest.fixture
def dagster_dev(tmp_path, monkeypatch):
    # An empty landing zone: the running sensors find nothing to launch while the UI is queried.
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    with run_dagster_dev(tmp_path / "dagster_home") as port:
        yield port


def test_the_ui_serves_every_dataset_in_its_group(dagster_dev):
    nodes = graphql(dagster_dev, QUERY)["data"]["assetNodes"]
    groups = {tuple(node["assetKey"]["path"]): node["groupName"] for node in nodes}
    assert set(groups.values()) == set(DATASETS)
    assert all(group == path[0] for path, group in groups.items())  # each dataset's assets in its own group
    for name, dataset in DATASETS.items():
        served = {path[1] for path in groups if path[0] == name}
        per_source = {f"{stage}_{s}" for s in dataset.sources for stage in ("raw", "clean")}
        quarantine = {f"{s}_quarantine" for s in dataset.sources}
        assert served == LIFECYCLE | per_source | quarantine | set(dataset.reference)
    unpartitioned = {path for node in nodes if not node["isPartitioned"] for path in [tuple(node["assetKey"]["path"])]}
    assert unpartitioned == {
        (name, asset) for name, dataset in DATASETS.items() for asset in UNPARTITIONED | set(dataset.reference)
    }


def test_the_sensors_are_served_running_with_their_descriptions(dagster_dev):
    query = (
        '{ sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: '
        '"mlplatform"}) { ... on Sensors { results { name description sensorState { status } } } } }'
    )
    sensors = graphql(dagster_dev, query)["data"]["sensorsOrError"]["results"]
    by_name = {sensor["name"]: sensor for sensor in sensors}
    kinds = ("landing_sensor", "first_training_sensor", "drift_retrain_sensor")
    per_dataset = {f"{name}_{kind}" for name in DATASETS for kind in kinds}
    assert set(by_name) == per_dataset | {"run_failure_alert_sensor", "follow_new_data_sensor"}
    assert all(sensor["sensorState"]["status"] == "RUNNING" and sensor["description"] for sensor in sensors)
