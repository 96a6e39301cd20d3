"""Concurrency on the shipped dagster.yaml: DuckDB writers one at a time, even in a parallel multiprocess run; and
runs of one instance in several processes at once (overlapping backfills, a sensor's run beside a manual run of the
same partition, two datasets) that end without a lock error or a duplicate row, each table written after the
tables it reads."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import git_project

from mlplatform.data.versioning import read_md5
from mlplatform.data.warehouse import content_hash, partition_row_count
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.resources.landing import LandingZone


def test_a_parallel_run_executes_its_duckdb_writers_one_at_a_time(data_dir):
    driver = Path(__file__).with_name("parallel_month.py")
    completed = subprocess.run(
        [sys.executable, str(driver), "flights", "2013-01"], capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["success"] and report["pool_limit"] == 1
    steps = report["steps"]
    assert sorted(step for *_, step in steps) == [
        "flights__features",
        "flights__raw_flights",
        "flights__raw_weather",
        "flights__validate_flights",
        "flights__validate_weather",
    ]
    # Each writer finished before the next one started: no two held the warehouse at once.
    for (_, end, step), (start, _, next_step) in pairwise(steps):
        assert end <= start, f"{step} overlapped {next_step}"


# ---------------------------------------------------------------------------------------------------------------
# Runs of one instance and one warehouse at once, each in its own process: two overlapping backfills (employment
# 2017..2018 and 2018), a sensor's run and a manual run of one partition (employment 2017: the landing sensor's
# request, launched as the daemon would, and the first backfill's), and another dataset (flights 2013-01).
# ---------------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).parents[1]
MLPLATFORM = str(Path(sys.executable).with_name("mlplatform"))
SAMPLED = {"employment/people": 2000, "flights/flights": 3000}  # rows per landing file: the runs, not the data, matter
LANDED = {
    "employment": ["people/2017.csv", "people/2018.csv"],
    "flights": [
        "flights/2013-01.csv",
        "weather/2013-01.csv",
        *(f"reference/{t}.csv" for t in get_dataset("flights").reference),
    ],
}


@dataclass(frozen=True)
class AtOnce:
    project: Path
    outputs: dict[str, subprocess.CompletedProcess]
    sensor_cursor: str

    @property
    def landing(self) -> Path:
        return self.project / "data" / "landing"

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.project / ".dagster"))


def _landing_sensor(dataset: str) -> dg.SensorDefinition:
    return next(s for s in dataset_definitions(get_dataset(dataset)).sensors if s.name == f"{dataset}_landing_sensor")


def _tick(instance: dg.DagsterInstance, landing: Path, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    return _landing_sensor("employment")(context)


@pytest.fixture(scope="module")
def at_once(tmp_path_factory, seeded_landing) -> AtOnce:
    project = git_project(tmp_path_factory.mktemp("at_once") / "project")
    landing = project / "data" / "landing"
    for dataset, names in LANDED.items():
        for name in names:
            source = seeded_landing / dataset / name
            rows = SAMPLED.get(f"{dataset}/{name.split('/')[0]}")
            lines = source.read_text().splitlines(keepends=True)
            (landing / dataset / name).parent.mkdir(parents=True, exist_ok=True)
            (landing / dataset / name).write_text("".join(lines[: rows + 1] if rows else lines))
    home = project / ".dagster"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "MLPLATFORM_DATA_DIR": str(project / "data"), "DAGSTER_HOME": str(home)}

    # A tick of employment's landing sensor, before anything is loaded: it asks for both periods; the first one's
    # run is started here as the daemon would.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tick = _tick(instance, landing)
    request = tick.run_requests[0]
    asked = [(each.job_name, each.partition_key) for each in tick.run_requests]
    assert asked == [("employment_period_pipeline", "2017"), ("employment_period_pipeline", "2018")]
    sensor_run = [sys.executable, str(Path(__file__).with_name("sensor_run.py")), "employment_landing_sensor"]
    commands = {
        "employment 2017..2018": [MLPLATFORM, "materialize", "--dataset", "employment", "--partitions", "2017..2018"],
        "employment 2018": [MLPLATFORM, "materialize", "--dataset", "employment", "--partitions", "2018"],
        "sensor's employment 2017": [*sensor_run, request.job_name, request.partition_key, request.run_key],
        "flights 2013-01": [MLPLATFORM, "materialize", "--dataset", "flights", "--partitions", "2013-01"],
    }
    started = {
        name: subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in commands.items()
    }
    outputs = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=900)
        outputs[name] = subprocess.CompletedProcess(commands[name], process.returncode, stdout, stderr)
    return AtOnce(project, outputs, tick.cursor)


def test_runs_at_once_all_succeed_without_a_lock_error(at_once):
    for name, done in at_once.outputs.items():
        assert done.returncode == 0, f"{name}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Could not set lock" not in done.stderr and "Traceback" not in done.stderr, name
    assert json.loads(at_once.outputs["sensor's employment 2017"].stdout.splitlines()[-1])["success"]
    with at_once.instance() as instance:
        runs = instance.get_run_records()
        assert {record.dagster_run.status for record in runs} == {dg.DagsterRunStatus.SUCCESS}
        storage = instance.event_log_storage
        assert not any(storage.get_concurrency_info(key).claimed_slots for key in storage.get_concurrency_keys())
    partitions = sorted(
        r.dagster_run.tags.get("dagster/partition", "-") for r in runs if "period" in r.dagster_run.job_name
    )
    assert partitions == ["2013-01", "2017", "2017", "2018", "2018"]  # each overlap ran twice


@pytest.mark.parametrize(
    ("dataset", "period"), [("employment", "2017"), ("employment", "2018"), ("flights", "2013-01")]
)
def test_each_period_holds_its_rows_once_as_its_newest_materializations_recorded(at_once, dataset, period):
    """No duplicate: the landed rows, each once. Every table of the period is what its newest materialization
    recorded (content hash, DVC version), and each was written after the newest write of the tables it reads. Two
    runs of one period take the `duckdb` slot step by step, so their steps may interleave: the tables left can come
    from either run (a fresh-clone CI run saw it), but never from a step that read an older upstream."""
    spec = get_dataset(dataset)
    with duckdb.connect(str(at_once.project / "data" / "warehouse.duckdb"), read_only=True) as con:
        for source in spec.sources:
            landed = len((at_once.landing / dataset / source / f"{period}.csv").read_text().splitlines()) - 1
            raw, clean, quarantined = (
                partition_row_count(con, spec.table(table(source)), period)
                for table in (raw_table, clean_table, quarantine_table)
            )
            assert raw == clean + quarantined == landed
        tables = [t(s) for s in spec.sources for t in (raw_table, clean_table, quarantine_table)] + [FEATURES_TABLE]
        now = {table: content_hash(con, spec.table(table), period) for table in tables}
    with at_once.instance() as instance:
        latest = {
            table: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key(spec, table), asset_partitions=[period]), limit=1
            ).records[0]
            for table in tables
        }
        ran = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/partition": period, "mlplatform/job": "period_pipeline"})
        )
        assert {record.run_id for record in latest.values()} <= {record.dagster_run.run_id for record in ran}
    for source in spec.sources:
        raw, clean, quarantined = (latest[table(source)] for table in (raw_table, clean_table, quarantine_table))
        assert clean.run_id == quarantined.run_id  # one step writes both
        assert raw.storage_id < clean.storage_id < latest[FEATURES_TABLE].storage_id, source
    for table, record in latest.items():
        metadata = record.asset_materialization.metadata
        assert metadata["content_hash"].value == now[table], table
        if "dvc/md5" in metadata:
            assert read_md5(at_once.project / f"{metadata['dvc/path'].value}.dvc") == metadata["dvc/md5"].value


def test_the_landing_sensor_asks_for_nothing_the_runs_loaded(at_once):
    with at_once.instance() as instance:
        tick = _tick(instance, at_once.landing, at_once.sensor_cursor)
    assert not tick.run_requests and "no new or changed" in tick.skip_reason.skip_message
