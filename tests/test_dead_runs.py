"""Runs whose process is gone, on a real instance with the shipped dagster.yaml: the `mlplatform` command fails them
and frees their pool slots; the daemon's run monitoring fails them through LocalRunLauncher and frees the slots of
runs that ended."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from mlplatform.orchestration.dead_runs import (
    PROCESS_TAG,
    LocalRunLauncher,
    process_tags,
    reclaim_dead_runs,
    run_process_alive,
)

SHIPPED_CONFIG = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
POOL = "duckdb"


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(overrides=SHIPPED_CONFIG, temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


@pytest.fixture(scope="module")
def exited_process() -> tuple[int, str]:
    """The PID and process tag of a process that has exited (and been waited for)."""
    code = f"from mlplatform.orchestration.dead_runs import process_tags; print(process_tags()[{PROCESS_TAG!r}])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tag = done.stdout.strip()
    return int(tag.split("/")[1]), tag


def _run(instance, status=dg.DagsterRunStatus.STARTED, tags=None, step: str | None = "employment__raw_people"):
    """A run of ``status``; with ``step``, holding the duckdb pool's slot for it."""
    run = instance.add_run(dg.DagsterRun(job_name="employment_period_pipeline", status=status, tags=tags or {}))
    if step:
        assert instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, step).is_claimed
    return run


def _holders(instance) -> set[str]:
    return {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots}


def test_the_shipped_instance_monitors_runs_with_the_local_launcher(instance):
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == 1


def test_a_dead_commands_run_is_failed_and_its_slot_freed_and_nothing_else(instance, exited_process):
    _, dead_tag = exited_process
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    dead = _run(instance, tags={PROCESS_TAG: dead_tag})
    # A live process (this one), another machine's, and one whose PID a new process took since: only the first two
    # may still be running.
    live = _run(instance, tags=process_tags(), step=None)
    elsewhere = _run(instance, tags={PROCESS_TAG: f"not-{socket.gethostname()}/1/1"}, step=None)
    reused = _run(instance, tags={PROCESS_TAG: f"{socket.gethostname()}/{os.getpid()}/1"}, step=None)
    # A run that waits for the slot the dead run holds.
    waiting = instance.event_log_storage.claim_concurrency_slot(POOL, live.run_id, "employment__validate_people")
    assert not waiting.is_claimed and _holders(instance) == {dead.run_id}

    assert {run.run_id for run in reclaim_dead_runs(instance)} == {dead.run_id, reused.run_id}
    status = {run.run_id: instance.get_run_by_id(run.run_id).status for run in (dead, live, elsewhere, reused)}
    assert status == {
        dead.run_id: dg.DagsterRunStatus.FAILURE,
        live.run_id: dg.DagsterRunStatus.STARTED,
        elsewhere.run_id: dg.DagsterRunStatus.STARTED,
        reused.run_id: dg.DagsterRunStatus.FAILURE,
    }
    [failure] = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "is gone" in failure.message and "PID" in failure.message
    # The slot is free, and the run that waited for it gets it.
    assert not _holders(instance)
    claimed = instance.event_log_storage.claim_concurrency_slot(POOL, live.run_id, "employment__validate_people")
    assert claimed.is_claimed
    assert reclaim_dead_runs(instance) == []  # nothing left to do: the second call changes nothing


def test_slots_of_runs_that_ended_or_were_deleted_are_freed(instance):
    instance.event_log_storage.set_concurrency_slots(POOL, 3)
    ended = _run(instance, dg.DagsterRunStatus.CANCELED)
    deleted = _run(instance, step="employment__features")
    running = _run(instance, tags=process_tags(), step="employment__validate_people")
    instance.delete_run(deleted.run_id)  # Dagster frees a deleted run's slots itself; a stale claim stays
    instance.event_log_storage.claim_concurrency_slot(POOL, deleted.run_id, "employment__features")
    assert _holders(instance) == {ended.run_id, deleted.run_id, running.run_id}
    assert reclaim_dead_runs(instance) == []
    assert _holders(instance) == {running.run_id}


def test_run_monitoring_fails_a_launched_run_whose_processes_are_gone(tmp_path, exited_process):
    """What the daemon does each poll: the run worker and its step processes recorded their PIDs in the event log."""
    settings = {**SHIPPED_CONFIG["run_monitoring"], "free_slots_after_run_end_seconds": 1}
    overrides = {**SHIPPED_CONFIG, "run_monitoring": settings}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        _monitor(instance, exited_process[0])


def _monitor(instance: dg.DagsterInstance, dead_pid: int) -> None:
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    dead, alive, silent = (_run(instance, step=step) for step in ("employment__raw_people", None, None))
    started = "Started process for run"
    instance.report_engine_event(f"{started} (pid: {dead_pid}).", dead, EngineEventData.in_process(dead_pid))
    # Its worker is gone, but a step process it started is alive: the run goes on.
    instance.report_engine_event(f"{started} (pid: {dead_pid}).", alive, EngineEventData.in_process(dead_pid))
    instance.report_engine_event("Executing steps in process", alive, EngineEventData.in_process(os.getpid()))
    assert run_process_alive(instance, instance.get_run_by_id(dead.run_id)) is False
    assert run_process_alive(instance, instance.get_run_by_id(alive.run_id)) is True
    assert run_process_alive(instance, instance.get_run_by_id(silent.run_id)) is None  # no PID yet: cannot tell

    logger = logging.getLogger("run_monitoring_test")
    for run in (dead, alive, silent):
        [record] = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run.run_id]))
        monitor_started_run(instance, None, record, logger)  # no resume attempts: no workspace needed
    status = {run.run_id: instance.get_run_by_id(run.run_id).status for run in (dead, alive, silent)}
    assert status == {
        dead.run_id: dg.DagsterRunStatus.FAILURE,
        alive.run_id: dg.DagsterRunStatus.STARTED,
        silent.run_id: dg.DagsterRunStatus.STARTED,
    }
    [failure] = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"PIDs {dead_pid}" in failure.message

    # The daemon's slot iteration frees the failed run's slot once free_slots_after_run_end_seconds have passed.
    [record] = instance.get_run_records(filters=dg.RunsFilter(run_ids=[dead.run_id]))
    time.sleep(max(0.0, record.end_time + 1.1 - time.time()))
    list(execute_concurrency_slots_iteration(SimpleNamespace(instance=instance), logger))
    assert not _holders(instance)
