"""The production topology as processes on this machine: the same commands and files as deploy/compose.yaml
(dagster.production.yaml, workspace.production.yaml, celery.yaml), on free ports of 127.0.0.1.

Started: ``dagster instance migrate`` and ``mlplatform pools`` (PostgreSQL storage), a gRPC code server,
``dagster-daemon``, ``dagster-webserver`` and Celery workers, each its own process group, so that a worker can be
killed whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from mlplatform.data.lake import LakeSettings, connect_lake
from mlplatform.data.landing import period_file, reference_file
from mlplatform.data.sql import sql_string
from mlplatform.datasets import Dataset, get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.resources import resources_for
from production.servers import BUCKET, Postgres, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "mlplatform"
WORKERS = ("worker-1", "worker-2")

RECEIVED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] received")
SUCCEEDED = re.compile(r"Task (\S+)\[([0-9a-f-]+)\] succeeded in ([0-9.]+)s")

MATERIALIZATIONS = """
query ($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition runId timestamp
        tags { key value }
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
      }
    }
  }
}"""
RUNS = """
query { runsOrError { ... on Runs { results { runId jobName status startTime endTime tags { key value } } } } }"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
RUN_EVENTS = """
query ($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { __typename ... on MessageEvent { message } } } }
}"""
BACKFILL_STATUS = """
query ($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
SENSOR = """
query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor { id } } }"""
STOP_SENSOR = """
mutation ($id: String!) { stopSensor(id: $id) { ... on StopSensorMutationResult { instigationState { status } } } }"""


def program(name: str) -> str:
    return str(BIN / name)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and everything it started (a worker's pool processes too): a lost machine."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@dataclass
class Topology:
    root: Path
    env: dict[str, str]
    webserver_port: int
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    def start(self, name: str, command: list[str]) -> Process:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("w") as output:
            popen = subprocess.Popen(
                command, env=self.env, cwd=self.root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    def run(self, command: list[str], timeout: float = 300) -> str:
        done = subprocess.run(command, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-3000:]}")
        return done.stdout

    def start_worker(self, name: str, celery_config: Path) -> Process:
        return self.start(
            name,
            [
                program("dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_config),
                "--name", name, "--", "--concurrency=1", "--loglevel=INFO",
            ],
        )  # fmt: skip

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.webserver_port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def latest(self, key: dg.AssetKey, partitions: list[str] | None = None) -> dict[str | None, dict]:
        """The newest materialization of each partition (all, by default; None for an unpartitioned asset): its
        metadata by label, its tags and its run."""
        answer = self.graphql(MATERIALIZATIONS, {"key": {"path": key.path}, "partitions": partitions})
        found: dict[str | None, dict] = {}
        for event in sorted(answer["assetOrError"]["assetMaterializations"], key=lambda e: float(e["timestamp"])):
            metadata = {e["label"]: e.get("intValue", e.get("text")) for e in event["metadataEntries"]}
            found[event["partition"]] = {
                "metadata": metadata,
                "tags": {tag["key"]: tag["value"] for tag in event["tags"]},
                "run": event["runId"],
            }
        return found

    def runs(self) -> list[dict]:
        return self.graphql(RUNS)["runsOrError"]["results"]

    def ended_runs(self, runs: list[dict]) -> list[dict] | None:
        """``runs`` once none of them is still to end (created and not yet queued counts: an automatic retry is
        created before it is queued), else None."""
        going = ("NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING")
        return None if any(run["status"] in going for run in runs) else runs

    def launch_backfill(self, keys: list[dg.AssetKey], first: str, last: str) -> str:
        """A backfill of the partitions ``first``..``last`` of each of ``keys``; returns its id.

        Partitions by asset, not `partitionNames` + `assetSelection`: with those, Dagster also targets every
        partition downstream of the named ones, and features read a 12-month look-back, so a backfill of 2013 would
        compute features for every month of 2014 too."""
        ranges = {"range": {"start": first, "end": last}}
        params = {"partitionsByAssets": [{"assetKey": {"path": key.path}, "partitions": ranges} for key in keys]}
        launched = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"the backfill was refused: {launched}")
        return launched["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        return self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]

    def stop_sensor(self, name: str) -> str:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": name}
        sensor_id = self.graphql(SENSOR, {"selector": selector})["sensorOrError"]["id"]
        return self.graphql(STOP_SENSOR, {"id": sensor_id})["stopSensor"]["instigationState"]["status"]

    def worker_tasks(self, worker: str) -> tuple[list[str], list[str]]:
        """The Celery task ids a worker received and finished, from its log."""
        log = self.processes[worker].log.read_text(errors="replace")
        return [m[1] for m in RECEIVED.findall(log)], [m[1] for m in SUCCEEDED.findall(log)]

    def step_seconds(self, worker: str) -> list[float]:
        """How long each step a worker finished took, from its log."""
        return [float(m[2]) for m in SUCCEEDED.findall(self.processes[worker].log.read_text(errors="replace"))]

    def succeeds(self, command: list[str]) -> bool:
        try:
            self.run(command, timeout=30)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            return False
        return True

    def webserver_up(self) -> bool:
        try:
            return bool(self.graphql("query { version }"))
        except OSError:
            return False

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def explain(self, runs: list[dict]) -> str:
        """Why each of ``runs`` is where it is: its status and tags, its events, and the daemon's lines naming it."""
        daemon = self.processes["daemon"].log.read_text(errors="replace").splitlines()
        parts = []
        for run in runs:
            events = self.graphql(RUN_EVENTS, {"runId": run["runId"]})["logsForRun"].get("events", [])
            lines = [f"{e['__typename']}: {e.get('message', '')[:300]}" for e in events]
            named = [line[:300] for line in daemon if run["runId"] in line]
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            parts.append(
                f"=== {run['jobName']} {run['runId']} {run['status']} {tags}\n"
                + "\n".join(lines[-25:])
                + "\n--- daemon ---\n"
                + "\n".join(named[-15:])
            )
        return "\n".join(parts)

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ---\n{process.tail()}" for name, process in self.processes.items())


def not_succeeded(runs: list[dict]) -> list[dict]:
    """The runs that neither succeeded nor were retried to success. The instance launches a run whose run worker
    died (not one whose step failed) once more (deploy/dagster.production.yaml, `run_retries`), tagging the failed
    run with its retry's id: that is the topology recovering, as it is configured to."""
    by_id = {run["runId"]: run for run in runs}

    def ends_in_success(run: dict) -> bool:
        while run["status"] == "FAILURE":
            retry = next((t["value"] for t in run["tags"] if t["key"] == "dagster/auto_retry_run_id"), None)
            if retry not in by_id:
                return False
            run = by_id[retry]
        return run["status"] == "SUCCESS"

    return [run for run in runs if not ends_in_success(run)]


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 2.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def install_instance(dagster_home: Path) -> None:
    """deploy/dagster.production.yaml as the instance, byte for byte, as the image installs it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY / "dagster.production.yaml", dagster_home / "dagster.yaml")


def celery_config_with(root: Path, visibility_timeout: int) -> Path:
    """deploy/celery.yaml with one change: how long Redis waits before handing a dead worker's step to another.
    Production waits two hours (longer than any step); the test cannot."""
    settings = yaml.safe_load((DEPLOY / "celery.yaml").read_text())
    settings["execution"]["config"]["config_source"]["broker_transport_options"]["visibility_timeout"] = (
        visibility_timeout
    )
    path = root / "celery.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def git_repository(root: Path) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(root)], check=True)
    return root


def production_environment(root: Path, postgres: Postgres, redis: str, s3: str, visibility_timeout: int) -> dict:
    """Every variable of the production profile (docs/deployment.md's table), pointing at these servers."""
    root.mkdir(parents=True, exist_ok=True)
    dagster_db, lake_db = postgres.create_database("dagster"), postgres.create_database("lake")
    return {
        **os.environ,
        # As in the image: the environment's programs first (dagster-celery starts `celery` from PATH).
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(root / "dagster_home"),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": dagster_db,
        "DAGSTER_COMPUTE_LOGS_DIR": str(root / "compute_logs"),
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(free_port()),
        "MLPLATFORM_ENV": "production",
        "MLPLATFORM_EXECUTOR": "celery",
        "MLPLATFORM_CELERY_CONFIG": str(celery_config_with(root, visibility_timeout)),
        "MLPLATFORM_CELERY_BROKER": f"{redis}/0",
        "MLPLATFORM_CELERY_BACKEND": f"{redis}/1",
        "MLPLATFORM_LAKE_CATALOG": postgres.libpq(lake_db),
        "MLPLATFORM_LAKE_DATA_PATH": f"s3://{BUCKET}/{lake_db}/lake/",
        "MLPLATFORM_S3_ENDPOINT": s3,
        "MLPLATFORM_LANDING_DIR": str(root / "landing"),
        "MLPLATFORM_DVC_REPO": str(git_repository(root / "dvc")),
        "MLPLATFORM_DVC_VERSIONS_DIR": str(root / "dvc" / "versions"),
        "MLPLATFORM_DVC_REMOTE_URL": f"s3://{BUCKET}/{lake_db}/dvc",
        "MLPLATFORM_ALERT_WEBHOOK": "",
        "MLPLATFORM_DATA_DIR": str(root / "data"),
    }


def lake_of(env: dict[str, str]) -> LakeSettings:
    """The DuckLake the production profile writes, read from its environment."""
    extensions = str(Path(env["MLPLATFORM_DATA_DIR"]) / "duckdb_extensions")
    return LakeSettings(
        env["MLPLATFORM_LAKE_CATALOG"], env["MLPLATFORM_LAKE_DATA_PATH"], env["MLPLATFORM_S3_ENDPOINT"], extensions
    )


@contextmanager
def running_topology(
    root: Path, postgres: Postgres, redis: str, s3: str, visibility_timeout: int, workers: tuple[str, ...] = WORKERS
) -> Iterator[Topology]:
    """Migrate the instance, then start the code server, the Celery workers, the daemon and the webserver, in the
    order compose.yaml's health checks impose; stop them all on the way out."""
    env = production_environment(root, postgres, redis, s3, visibility_timeout)
    # DuckDB's extensions installed once from their wheels, before many processes want them at the same time.
    connect_lake(lake_of(env)).close()
    install_instance(Path(env["DAGSTER_HOME"]))
    topology = Topology(root=root, env=env, webserver_port=free_port())
    workspace = str(DEPLOY / "workspace.production.yaml")
    code_port = env["DAGSTER_CODE_SERVER_PORT"]
    try:
        topology.run([program("dagster"), "instance", "migrate"])
        topology.run([program("mlplatform"), "pools"])  # as deploy/compose.yaml's instance-migrate
        topology.start(
            "code-server",
            [program("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", code_port,
             "-m", "mlplatform.definitions", "--location-name", LOCATION],
        )  # fmt: skip
        health = [program("dagster"), "api", "grpc-health-check", "-p", code_port]
        wait_until(lambda: topology.succeeds(health), timeout=240, what="the code server", every=3)
        for worker in workers:
            topology.start_worker(worker, Path(env["MLPLATFORM_CELERY_CONFIG"]))
        topology.start("daemon", [program("dagster-daemon"), "run", "-w", workspace])
        topology.start(
            "webserver",
            [program("dagster-webserver"), "-h", "127.0.0.1", "-p", str(topology.webserver_port), "-w", workspace],
        )
        wait_until(topology.webserver_up, timeout=180, what="the webserver")
        for worker in workers:
            wait_until(lambda w=worker: "ready." in topology.processes[w].tail(20000), 120, f"Celery {worker}")
        yield topology
    except BaseException:
        print(topology.diagnostics())
        raise
    finally:
        topology.stop()


def period_keys(dataset: Dataset) -> list[dg.AssetKey]:
    """What a dataset's period pipeline materializes: raw, clean and quarantined rows of each source, features."""
    tables = [table(source) for source in dataset.sources for table in (raw_table, clean_table, quarantine_table)]
    return [asset_key(dataset, name) for name in [*tables, FEATURES_TABLE]]


def land(seeded: Path, landing: Path, dataset: Dataset, periods: list[str], reference: bool = True) -> None:
    """Copy a dataset's reference files (unless told not to) and the files of ``periods`` into a landing zone."""
    tables = dataset.reference if reference else []
    for path in [reference_file(seeded, dataset, table) for table in tables] + [
        period_file(seeded, dataset, source, period) for source in dataset.sources for period in periods
    ]:
        target = landing / path.relative_to(seeded)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def embedded_md5s(project: Path, seeded: Path, plan: dict[str, list[str]]) -> dict[tuple[str, str, str], str]:
    """The periods of ``plan`` materialized on the embedded default (a DuckDB file, a local DVC remote) in a git
    repository ``project``, one after another as `mlplatform materialize` does: the DVC md5 of every versioned
    partition, keyed (dataset, asset, period)."""
    md5s: dict[tuple[str, str, str], str] = {}
    previous = os.environ.get("MLPLATFORM_DATA_DIR")
    os.environ["MLPLATFORM_DATA_DIR"] = str(project / "data")
    try:
        with dg.instance_for_test() as instance:
            for name, periods in plan.items():
                dataset = get_dataset(name)
                land(seeded, project / "data" / "landing", dataset, periods)
                assets = list(dataset_definitions(dataset).assets)
                resources = resources_for("local")
                if dataset.reference:
                    keys = [asset_key(dataset, table) for table in dataset.reference]
                    dg.materialize(assets, selection=keys, instance=instance, resources=resources)
                for period in periods:
                    result = dg.materialize(
                        assets, selection=period_keys(dataset), partition_key=period, instance=instance,
                        resources=resources,
                    )  # fmt: skip
                    for event in result.get_asset_materialization_events():
                        metadata = event.step_materialization_data.materialization.metadata
                        if "dvc/md5" in metadata:
                            md5s[(name, event.asset_key.path[-1], period)] = metadata["dvc/md5"].value
    finally:
        if previous is None:
            os.environ.pop("MLPLATFORM_DATA_DIR", None)
        else:
            os.environ["MLPLATFORM_DATA_DIR"] = previous
    return md5s


def landed_rows(landing: Path, dataset: Dataset, source: str, period: str) -> int:
    """The data rows of a landed period file, as DuckDB reads it."""
    path = period_file(landing, dataset, source, period)
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
    return duckdb.sql(f"SELECT count(*) FROM {reader}({sql_string(str(path))})").fetchone()[0]
