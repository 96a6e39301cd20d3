"""Runs whose process is gone, on real instances with the shipped dagster.yaml: the `mlplatform` command fails them
and frees their pool slots; the daemon's run monitoring fails them through LocalRunLauncher, frees the slots of runs
that ended and retries them, the last shown end to end on `dagster dev` killed whole mid-run."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from dagster_dev import dagster_dev

from mlplatform.orchestration.dead_runs import (
    PROCESS_TAG,
    LocalRunLauncher,
    in_process_run_tags,
    reclaim_dead_runs,
    recorded_pids,
    run_process_alive,
)

SHIPPED_CONFIG = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
POOL = "duckdb"
IN_FLIGHT = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(overrides=SHIPPED_CONFIG, temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


@pytest.fixture(scope="module")
def exited_process() -> tuple[int, str]:
    """The PID and process tag of a process that has exited (and been waited for)."""
    code = f"from mlplatform.orchestration.dead_runs import in_process_run_tags as t; print(t()[{PROCESS_TAG!r}])"
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
    assert instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == 1


def test_a_dead_commands_run_is_failed_and_its_slot_freed_and_nothing_else(instance, exited_process):
    _, dead_tag = exited_process
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    dead = _run(instance, tags={PROCESS_TAG: dead_tag})
    # A live process (this one), another machine's, and one whose PID a new process took since: only the first two
    # may still be running.
    live = _run(instance, tags=in_process_run_tags(), step=None)
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


def test_under_another_launcher_only_the_commands_own_runs_are_judged(tmp_path, exited_process):
    """Production keeps Dagster's default launcher: its run workers live in other containers, where the PIDs they
    record mean nothing to this machine. A run the command tagged is still judged by its host and PID."""
    dead_pid, dead_tag = exited_process
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert not isinstance(instance.run_launcher, LocalRunLauncher)
        launched = _run(instance, step=None)
        started = f"Started process for run (pid: {dead_pid})."
        instance.report_engine_event(started, launched, EngineEventData.in_process(dead_pid))
        command = _run(instance, tags={PROCESS_TAG: dead_tag}, step=None)
        assert run_process_alive(instance, launched) is None
        assert [run.run_id for run in reclaim_dead_runs(instance)] == [command.run_id]
        assert instance.get_run_by_id(launched.run_id).status == dg.DagsterRunStatus.STARTED


def test_slots_of_runs_that_ended_or_were_deleted_are_freed(instance):
    instance.event_log_storage.set_concurrency_slots(POOL, 3)
    ended = _run(instance, dg.DagsterRunStatus.CANCELED)
    deleted = _run(instance, step="employment__features")
    running = _run(instance, tags=in_process_run_tags(), step="employment__validate_people")
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
    time.sleep(max(0.0, record.end_time + 2 - time.time()))  # after its end, the retry decision updates it too
    list(execute_concurrency_slots_iteration(SimpleNamespace(instance=instance), logger))
    assert not _holders(instance)


def test_after_a_crash_the_daemon_fails_the_dead_run_frees_its_slot_and_runs_it_again(tmp_path, seeded_landing):
    """`dagster dev` (webserver, daemon, code server, run workers) on the shipped dagster.yaml, its monitoring polling
    faster, is SIGKILLed whole while the landing sensor's run of employment 2015 holds the `duckdb` slot: as when the
    machine dies, nothing records the run's end. Started again, the daemon's run monitoring finds no process of the
    run alive (LocalRunLauncher), fails it, frees the slot and launches it again from its failure (the sensor never
    asks twice for the same bytes); the period loads whole."""
    landing = tmp_path / "data" / "landing" / "employment" / "people"
    landing.mkdir(parents=True)
    rows = (seeded_landing / "employment" / "people" / "2015.csv").read_text().splitlines(keepends=True)[:2001]
    (landing / "2015.csv").write_text("".join(rows))
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = {**SHIPPED_CONFIG["run_monitoring"], "poll_interval_seconds": 2, "free_slots_after_run_end_seconds": 1}
    (home / "dagster.yaml").write_text(yaml.safe_dump({**SHIPPED_CONFIG, "run_monitoring": settings}))
    env = {"MLPLATFORM_DATA_DIR": str(tmp_path / "data")}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        with dagster_dev(home, env=env):
            killed = _wait_for(lambda: _running_step(instance, "employment__validate_people"), "the sensor's run")
            assert killed.tags["dagster/sensor_name"] == "employment_landing_sensor"
            run_worker = min(recorded_pids(instance, killed.run_id))
            os.killpg(os.getpgid(run_worker), signal.SIGKILL)  # dagster dev's group: every process it started
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED
        assert _holders(instance) == {killed.run_id}  # the wedge

        with dagster_dev(home, env=env):
            retry = _wait_for(lambda: _child_run(instance, killed.run_id, dg.DagsterRunStatus.SUCCESS), "the retry")
        [failure] = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "no process of the run is alive" in failure.message
        assert retry.tags["dagster/sensor_name"] == "employment_landing_sensor"
        assert not instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT))
        assert not _holders(instance)
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        counts = [
            con.execute(f"SELECT count(*) FROM employment.{table} WHERE period = '2015'").fetchone()[0]
            for table in ("raw_people", "clean_people", "features")
        ]
    assert counts == [2000, 2000, 2000]


def _running_step(instance: dg.DagsterInstance, step: str) -> dg.DagsterRun | None:
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        started = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if any(event.step_key == step for event in started):
            return record.dagster_run
    return None


def _child_run(instance: dg.DagsterInstance, parent: str, status: dg.DagsterRunStatus) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": parent}, statuses=[status]))
    return runs[0] if runs else None


def _wait_for(found, what: str, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while (value := found()) is None:
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.2)
    return value
