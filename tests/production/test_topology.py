"""The production topology, run for real: Dagster's instance on PostgreSQL, a gRPC code server, the daemon, the
webserver, two Celery workers on Redis, the warehouse a DuckLake (catalog in PostgreSQL, files in moto's S3) and
DVC's remote in the same S3. Started from deploy/'s own files (tests/production/topology.py).

The scenario, in order, once per module:
1. Both datasets' reference files and first periods land; the landing sensors (in the daemon) request the runs, the
   queue starts them, the steps run on the Celery workers.
2. Four more flights months land and an operator backfills them from the webserver (GraphQL, as the UI does);
   the partitions' steps spread over both workers. One worker is killed with SIGKILL, whole, while it runs a step:
   Redis hands the unacknowledged step to the other worker, and the backfill completes.
3. Everything is checked through the webserver's GraphQL and the warehouse itself, and compared with the same
   periods materialized on the embedded default (DuckDB file, local DVC remote): equal DVC md5s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest

from mlplatform.data.lake import connect_lake
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.orchestration.assets.common import asset_key
from production.servers import Postgres
from production.topology import (
    WORKERS,
    Topology,
    embedded_md5s,
    git_repository,
    lake_of,
    land,
    landed_rows,
    not_succeeded,
    period_keys,
    running_topology,
    wait_until,
)

SENSOR_LOADED = {"flights": ["2013-01", "2013-02"], "employment": ["2015", "2016"]}
BACKFILLED = ["2013-03", "2013-04", "2013-05", "2013-06"]
LINEAGE = """
query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode { dependencyKeys { path } } } }"""
# How long Redis waits before giving a dead worker's step to another (production: deploy/celery.yaml, 2 hours).
VISIBILITY_TIMEOUT = 45


@pytest.fixture(scope="module")
def topology(postgres: Postgres, redis: str, s3: str, tmp_path_factory) -> Iterator[Topology]:
    with running_topology(tmp_path_factory.mktemp("topology"), postgres, redis, s3, VISIBILITY_TIMEOUT) as started:
        yield started


@pytest.fixture(scope="module")
def loaded_by_sensors(topology: Topology, seeded_landing: Path) -> Topology:
    """Step 1: files land; the sensors, the queue and the workers do the rest."""
    # Redis hands a step that runs longer than the visibility timeout to another worker (deploy/celery.yaml: it must
    # exceed the longest step). Here it is 45 s, so that the killed worker's step comes back quickly, and a training
    # step takes minutes on 2 cores: it would be handed out again and again. So no first training here.
    for name in SENSOR_LOADED:
        assert topology.stop_sensor(f"{name}_first_training_sensor") == "STOPPED"
    landing = Path(topology.env["MLPLATFORM_LANDING_DIR"])
    for name, periods in SENSOR_LOADED.items():
        land(seeded_landing, landing, get_dataset(name), periods)

    def all_loaded() -> bool:
        for name, periods in SENSOR_LOADED.items():
            features = topology.latest(asset_key(get_dataset(name), FEATURES_TABLE), periods)
            if set(features) != set(periods):
                return False
        return topology.ended_runs(topology.runs()) is not None

    try:
        wait_until(all_loaded, timeout=900, what="the sensors' runs", every=5)
    except TimeoutError:
        print(topology.diagnostics())
        print(topology.explain([run for run in topology.runs() if run["status"] != "SUCCESS"]))
        raise
    return topology


@pytest.fixture(scope="module")
def backfilled(loaded_by_sensors: Topology, seeded_landing: Path) -> dict:
    """Step 2: a backfill of four more months from the webserver, and a worker killed in the middle of it."""
    topology = loaded_by_sensors
    flights = get_dataset("flights")
    # The operator stops the landing sensor, which would otherwise load the same months one at a time beside it.
    assert topology.stop_sensor("flights_landing_sensor") == "STOPPED"
    land(seeded_landing, Path(topology.env["MLPLATFORM_LANDING_DIR"]), flights, BACKFILLED)
    backfill = topology.launch_backfill(period_keys(flights), BACKFILLED[0], BACKFILLED[-1])
    before = {worker: set(topology.worker_tasks(worker)[0]) for worker in WORKERS}

    def busy_worker() -> tuple[str, str] | None:
        """A worker running a step of the backfill: it received a task after the launch and has not finished it."""
        for worker in WORKERS:
            received, succeeded = topology.worker_tasks(worker)
            running = [task for task in received if task not in before[worker] and task not in succeeded]
            if running:
                return worker, running[-1]
        return None

    killed, task = wait_until(busy_worker, timeout=600, what="a backfill step on a worker", every=0.5)
    time.sleep(1)  # into the step, not at its first line
    topology.processes[killed].kill()
    survivor = "worker-2" if killed == "worker-1" else "worker-1"

    def finished() -> str | None:
        status = topology.backfill_status(backfill)
        return status if status != "REQUESTED" else None

    try:
        status = wait_until(finished, timeout=1200, what="the backfill", every=5)
    except TimeoutError:
        print(topology.diagnostics())
        raise
    return {"status": status, "killed": killed, "task": task, "survivor": survivor, "before": before}


@pytest.fixture(scope="module")
def embedded_versions(seeded_landing: Path, tmp_path_factory) -> dict[tuple[str, str, str], str]:
    """The same periods on the embedded default (DuckDB file, local DVC remote): DVC md5 per asset and period."""
    project = git_repository(tmp_path_factory.mktemp("embedded") / "project")
    return embedded_md5s(project, seeded_landing, {**SENSOR_LOADED, "flights": SENSOR_LOADED["flights"] + BACKFILLED})


def test_sensor_runs_ran_their_steps_on_the_celery_workers_and_succeeded(loaded_by_sensors: Topology):
    finished = loaded_by_sensors.runs()
    unsuccessful = not_succeeded(finished)
    assert finished and not unsuccessful, loaded_by_sensors.explain(unsuccessful)
    launched = {}
    for run in finished:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        launched.setdefault(tags.get("dagster/sensor_name"), set()).add(run["jobName"])
    assert launched == {
        "flights_landing_sensor": {"flights_reference_data", "flights_period_pipeline"},
        "employment_landing_sensor": {"employment_period_pipeline"},
    }
    done = [loaded_by_sensors.worker_tasks(worker)[1] for worker in WORKERS]
    assert sum(len(tasks) for tasks in done) >= len(finished)  # every step went through a worker


def test_backfill_spreads_over_both_workers_and_survives_one_killed(backfilled: dict, loaded_by_sensors: Topology):
    topology = loaded_by_sensors
    assert backfilled["status"] == "COMPLETED_SUCCESS"
    # The killed worker's step was handed to the survivor and finished there: retried, not lost.
    assert backfilled["task"] in topology.worker_tasks(backfilled["survivor"])[1]
    # Both workers took steps of the backfill before one was killed.
    for worker in WORKERS:
        assert set(topology.worker_tasks(worker)[0]) - backfilled["before"][worker], worker

    def backfill_runs() -> list[dict]:
        return [run for run in topology.runs() if any(tag["key"] == "dagster/backfill" for tag in run["tags"])]

    # The backfill reads as complete when its partitions are materialized, which can be before its last run worker
    # has recorded the run's end.
    try:
        finished = wait_until(lambda: topology.ended_runs(backfill_runs()), 300, "the backfill's runs to end")
    except TimeoutError:
        print(topology.explain([run for run in backfill_runs() if run["status"] != "SUCCESS"]))
        raise
    unsuccessful = not_succeeded(finished)
    assert finished and not unsuccessful, topology.explain(unsuccessful)


def test_rows_are_conserved_and_not_doubled(backfilled: dict, loaded_by_sensors: Topology, seeded_landing: Path):
    topology = loaded_by_sensors
    landing = Path(topology.env["MLPLATFORM_LANDING_DIR"])
    done = {**SENSOR_LOADED, "flights": SENSOR_LOADED["flights"] + BACKFILLED}
    with connect_lake(lake_of(topology.env)) as con:
        for name, periods in done.items():
            dataset = get_dataset(name)
            for source in dataset.sources:
                raw = topology.latest(asset_key(dataset, raw_table(source)), periods)
                clean = topology.latest(asset_key(dataset, clean_table(source)), periods)
                quarantined = topology.latest(asset_key(dataset, quarantine_table(source)), periods)
                for period in periods:
                    rows = landed_rows(landing, dataset, source, period)
                    count = raw[period]["metadata"]["dagster/row_count"]
                    split = (
                        clean[period]["metadata"]["dagster/row_count"],
                        quarantined[period]["metadata"]["dagster/row_count"],
                    )
                    assert count == rows == sum(split), (name, source, period)
                    table = dataset.table(raw_table(source))
                    stored = con.execute(f"SELECT count(*) FROM {table} WHERE period = ?", [period]).fetchone()[0]
                    assert stored == rows, (name, source, period)


def test_lineage_and_data_versions_through_graphql(backfilled: dict, loaded_by_sensors: Topology):
    topology = loaded_by_sensors
    flights = get_dataset("flights")
    features = asset_key(flights, FEATURES_TABLE)
    node = topology.graphql(LINEAGE, {"key": {"path": features.path}})["assetNodeOrError"]
    upstream = {tuple(dep["path"]) for dep in node["dependencyKeys"]}
    assert {("flights", "clean_flights"), ("flights", "clean_weather")} <= upstream
    months = SENSOR_LOADED["flights"] + BACKFILLED  # all within the features' 12-month look-back
    clean = topology.latest(asset_key(flights, "clean_flights"), months)
    # A partition's data version is its DVC md5, so a version in the UI is a file in the DVC remote.
    assert all(clean[month]["tags"]["dagster/data_version"] == clean[month]["metadata"]["dvc/md5"] for month in months)
    # The last month's features name the versions of every clean month they read: Dagster records a range of
    # upstream partitions as the sha256 of their data versions in partition order.
    built = topology.latest(features, [months[-1]])[months[-1]]
    read = sha256("".join(clean[month]["metadata"]["dvc/md5"] for month in months).encode()).hexdigest()
    assert built["tags"]["dagster/input_data_version/flights/clean_flights"] == read


def test_data_versions_equal_the_embedded_defaults(backfilled: dict, loaded_by_sensors: Topology, embedded_versions):
    topology = loaded_by_sensors
    produced = {}
    for name, asset, period in embedded_versions:
        found = topology.latest(asset_key(get_dataset(name), asset), [period])
        produced[(name, asset, period)] = found[period]["metadata"]["dvc/md5"]
    assert len(embedded_versions) >= 3 * 2 + 2 * 2  # clean rows and features of every period
    assert produced == embedded_versions
