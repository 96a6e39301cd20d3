"""Runs whose process is gone: found, marked failed, and their pool slots freed.

A run killed by SIGKILL (or a lost machine) never writes its end: it stays STARTED and keeps the slots it claimed
in the instance's pools, and with the ``duckdb`` pool's one slot taken, every later run waits forever. A code
server fails a run whose run worker dies while the server lives; for the rest:

- ``mlplatform materialize`` calls :func:`reclaim_dead_runs` before each run it starts. It tags its own runs with
  its host, PID and the process's start time (:func:`in_process_run_tags`), so it can tell for sure that one is dead.
- Locally, ``dagster.yaml`` installs :class:`LocalRunLauncher`: Dagster's default launcher that can also answer the
  daemon's run monitoring, which then fails a run whose processes are all gone (its code server too). Everything
  runs on one machine there, so the PIDs a run worker and its step processes record in the event log can be
  checked. The daemon frees a failed run's slots after ``free_slots_after_run_end_seconds`` and, with
  ``run_retries``, launches it again from its failure.

A run on another machine, without the tag, is never judged here (None: cannot tell): the daemon's run monitoring
and its timeouts look after those.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.tags import MAX_RETRIES_TAG

# host/pid/start: the process running a run the `mlplatform` command started in process.
PROCESS_TAG = "mlplatform/process"
# Runs a process may still be running; QUEUED runs have no process yet and wait for the run coordinator.
_IN_FLIGHT = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def in_process_run_tags() -> dict[str, str]:
    """The tags of a run this process executes itself: which process it is, and no automatic retry of it (the daemon
    retries a run whose process died by launching it anew, which a run executed in process cannot be; its command
    reruns it)."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}/{pid}/{_start_time(pid) or ''}", MAX_RETRIES_TAG: "0"}


def run_process_alive(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool | None:
    """Whether a process that executes ``run`` is still alive; None where this machine cannot tell."""
    tag = run.tags.get(PROCESS_TAG)
    if tag:
        host, pid, started = tag.split("/", 2)
        if host != socket.gethostname():
            return None
        return _alive(int(pid), started)
    if not isinstance(instance.run_launcher, LocalRunLauncher):
        return None
    pids = recorded_pids(instance, run.run_id)
    return any(_alive(pid, "") for pid in pids) if pids else None


def reclaim_dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark failed every in-flight run whose process is gone, then free the pool slots (claimed or waited for) of
    every run that is over or no longer exists. Returns the runs marked failed."""
    dead = [
        record.dagster_run
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_IN_FLIGHT))
        if run_process_alive(instance, record.dagster_run) is False
    ]
    for run in dead:
        instance.report_run_failed(
            run, f"Its process ({_who(instance, run)}) is gone: a crash or a kill. Its pool slots are freed."
        )
    for run_id in _slot_holders(instance):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return dead


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (run workers started by the code server), which also tells the daemon's run
    monitoring whether a run's processes are alive. Only for an instance whose processes share one machine."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        alive = run_process_alive(self._instance, run)
        if alive is False:
            who = _who(self._instance, run)
            return CheckRunHealthResult(WorkerStatus.FAILED, f"no process of the run is alive ({who})")
        # Alive, or a run this machine cannot judge: left to the timeouts.
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def _who(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    tag = run.tags.get(PROCESS_TAG)
    if tag:
        host, pid, _ = tag.split("/", 2)
        return f"PID {pid} on {host}"
    return "PIDs " + ", ".join(map(str, sorted(recorded_pids(instance, run.run_id))))


def recorded_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """The PIDs the run's worker and step processes recorded in its engine events ("Started process for run",
    "Executing steps in process")."""
    pids = set()
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None and str(pid.value).isdigit():
            pids.add(int(pid.value))
    return pids


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    """Runs that hold a pool slot or wait in a pool's queue."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    holders = set(storage.get_concurrency_run_ids())
    for key in storage.get_concurrency_keys():
        holders.update(slot.run_id for slot in storage.get_concurrency_info(key).claimed_slots)
    return holders


def _alive(pid: int, started: str) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and (when ``started`` is known) is the process that
    started then rather than a later one given the same PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _stat(pid)
    if stat is None:  # no /proc (macOS): existence is all there is to know
        return True
    state, start = stat
    return state != "Z" and (not started or start == started)


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def _stat(pid: int) -> tuple[str, str] | None:
    """A Linux process's state and start time (clock ticks after boot), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields after the last ')' start at the state.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]
