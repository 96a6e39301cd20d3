"""Crash consistency: `mlplatform materialize` killed with SIGKILL (with the DVC processes it started) at each stage of
a dataset's run, then run again, leaves the warehouse, the DVC versions and the registry exactly as an undisturbed
run does, and no run or pool slot held by the dead process.

The platform is employment's 2015 and 2016, cut to their first rows, loaded by two commands: `--partitions 2015`
(its period pipeline) then `--partitions 2016` (its period pipeline, then training, promotion and scoring). The kills
share runs: each rerun of a command is the next kill's victim, a stage later, and the last rerun goes to the end. The
undisturbed platform is built meanwhile, beside it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
from conftest import git_project

from mlplatform.catalog import every_recorded_md5
from mlplatform.data.sql import identifier
from mlplatform.data.versioning import read_md5
from mlplatform.data.warehouse import content_hash
from mlplatform.orchestration.dead_runs import PROCESS_TAG

ROOT = Path(__file__).parents[1]
MLPLATFORM = str(Path(sys.executable).with_name("mlplatform"))
PERIODS = ("2015", "2016")
ROWS = 3000  # of each survey year: the model passes its gate with a margin (ROC AUC 0.88), so promotion and scoring run
IN_FLIGHT = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def materialize(period: str) -> list[str]:
    return [MLPLATFORM, "materialize", "--dataset", "employment", "--partitions", period]


@dataclass(frozen=True)
class Platform:
    project: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MLPLATFORM_DATA_DIR": str(self.project / "data"),
            "DAGSTER_HOME": str(self.project / ".dagster"),
            "PYTHONUNBUFFERED": "1",
        }

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.project / ".dagster"))

    def complete(self, period: str) -> str:
        done = subprocess.run(materialize(period), env=self.env, cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout


@dataclass(frozen=True)
class Kill:
    stage: str
    period: str  # the command's
    line: str  # what the stage logs once it has written its output
    mid_dvc: bool = False  # then wait for the `dvc add` or `dvc push` that versions the output, and kill during it


# In the order a run of the command reaches them.
KILLS = [
    Kill("ingestion", "2015", '"event": "landing file loaded"'),
    Kill("validation, while versioning", "2015", '"event": "partition validated"', mid_dvc=True),
    Kill("features", "2015", '"event": "features built"'),
    Kill("training, while versioning the model", "2016", '"event": "epoch done"', mid_dvc=True),
    Kill("promotion", "2016", '"event": "model evaluated"'),  # registered, not yet promoted
    Kill("scoring", "2016", '"event": "period scored"'),
]


def _platform(root: Path, seeded_landing: Path) -> Platform:
    project = git_project(root)
    for year in PERIODS:
        name = f"employment/people/{year}.csv"
        target = project / "data" / "landing" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = (seeded_landing / name).read_text().splitlines(keepends=True)
        target.write_text("".join(lines[: ROWS + 1]))
    return Platform(project)


def _undisturbed(platform: Platform) -> dict[str, object]:
    for period in PERIODS:
        platform.complete(period)
    return _state(platform)


def test_killed_at_every_stage_the_reruns_end_as_an_undisturbed_run(tmp_path, seeded_landing):
    with ThreadPoolExecutor(1) as beside:
        undisturbed = beside.submit(_undisturbed, _platform(tmp_path / "undisturbed", seeded_landing))
        platform = _platform(tmp_path / "killed", seeded_landing)
        dead_runs: list[str] = []
        for period in PERIODS:
            left = None  # the run the previous kill left behind: the next run begins by reclaiming it
            for kill in (kill for kill in KILLS if kill.period == period):
                output = _run_and_kill(platform, kill)
                if left:
                    assert f"run {left} lost its process; marked failed, its pool slots freed" in output
                left = _the_wedge(platform, kill)
                dead_runs.append(left)
            assert f"run {left} lost its process" in platform.complete(period)

        with platform.instance() as instance:
            assert not instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT))
            assert not _slot_holders(instance)
            failed = instance.get_run_records(filters=dg.RunsFilter(run_ids=dead_runs))
            assert {record.dagster_run.status for record in failed} == {dg.DagsterRunStatus.FAILURE}
        assert _state(platform) == undisturbed.result()


def _the_wedge(platform: Platform, kill: Kill) -> str:
    """The run the kill left: still STARTED, holding the pool slot its step claimed (every stage's step is in the
    `duckdb` pool, the model's in the `dvc` pool), which no later run could take. Returns its id."""
    with platform.instance() as instance:
        [dead] = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT))
        assert dead.dagster_run.status == dg.DagsterRunStatus.STARTED, kill.stage
        assert dead.dagster_run.tags[PROCESS_TAG].split("/")[1].isdigit()
        assert _slot_holders(instance) == {dead.dagster_run.run_id}, kill.stage
    return dead.dagster_run.run_id


def _run_and_kill(platform: Platform, kill: Kill) -> str:
    """Run the command until the stage logs its line (and, for a kill mid-DVC, starts DVC), then SIGKILL the command
    and every process it started; returns what it printed."""
    process = subprocess.Popen(
        materialize(kill.period),
        env=platform.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches its DVC processes too
    )
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:  # all along, so the pipe never fills while the kill waits
        for line in process.stdout:
            lines.append(line)
            if kill.line in line:
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _wait_for(lambda: reached.is_set() or process.poll() is not None, f"{kill.line} from {kill.stage}", 900)
    if reached.is_set() and kill.mid_dvc:
        _wait_for(lambda: _dvc_child(process.pid) or process.poll() is not None, f"dvc add under {process.pid}", 900)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reader.join()
    output = "".join(lines)
    assert process.returncode == -signal.SIGKILL, f"{kill.stage}: not killed; the run printed\n{output[-3000:]}"
    return output


def _dvc_child(pid: int) -> bool:
    """Whether a child of ``pid`` runs ``dvc add`` or ``dvc push``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid and any(part.endswith(b"dvc") for part in command) and {b"add", b"push"} & set(command):
            return True
    return False


def _wait_for(condition: Callable[[], bool], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.02)


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    storage = instance.event_log_storage
    holders = set(storage.get_concurrency_run_ids())
    for key in storage.get_concurrency_keys():
        holders.update(slot.run_id for slot in storage.get_concurrency_info(key).claimed_slots)
    return holders


def _state(platform: Platform) -> dict[str, object]:
    """Every table's rows (the registry's without its timestamps and the promotion's note, which names its run), every
    DVC version the workspace and the event log point at, and every object in DVC's cache and remote."""
    data = platform.project / "data"
    state: dict[str, object] = {}
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
        for schema, table in tables:
            name = f"{identifier(schema)}.{identifier(table)}"
            if schema != "main":
                state[name] = content_hash(con, name)
                continue
            columns = [
                identifier(column)
                for column, column_type, *_ in con.execute(f"DESCRIBE {name}").fetchall()
                if "TIME" not in column_type and column != "note"
            ]
            state[name] = con.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY ALL").fetchall()
    state["dvc files"] = {
        str(path.relative_to(platform.project)): read_md5(path) for path in sorted(data.rglob("*.dvc"))
    }
    for store, folder in (("cache", platform.project / ".dvc" / "cache"), ("remote", data / "dvc-remote")):
        state[f"dvc {store}"] = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    with platform.instance() as instance:
        state["recorded versions"] = sorted(every_recorded_md5(instance))
    return json.loads(json.dumps(state, default=str))
