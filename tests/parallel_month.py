"""Runs one period of a dataset's pipeline with the multiprocess executor (MLPLATFORM_EXECUTOR=multiprocess) on an
instance configured by the shipped dagster.yaml, and prints each step's start and end as JSON:
``python parallel_month.py flights 2013-01``.

It runs as its own program (see test_concurrency.py): Dagster's step subprocesses do not start under pytest.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import dagster as dg
import yaml

from mlplatform.datasets import get_dataset
from mlplatform.definitions import build_definitions
from mlplatform.orchestration.executors import EXECUTOR_ENV
from mlplatform.orchestration.jobs import job_names

SHIPPED_CONFIG = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())


def dataset_job(job_name: str) -> dg.JobDefinition:
    """The job, rebuilt in each step's subprocess from the code location."""
    return build_definitions("local").resolve_job_def(job_name)


def _reconstructable(job_name: str):
    return dg.build_reconstructable_job(
        "parallel_month", "dataset_job", (job_name,), reconstructor_working_directory=str(Path(__file__).parent)
    )


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float, str]]:
    starts, ends = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[event.step_key] = record.timestamp
    return sorted((starts[step], ends[step], step) for step in starts)


def main(dataset_name: str, period: str) -> None:
    os.environ[EXECUTOR_ENV] = "multiprocess"  # inherited by the step subprocesses, which rebuild the job
    names = job_names(get_dataset(dataset_name))
    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=SHIPPED_CONFIG, temp_dir=home) as instance,
    ):
        if names.reference:  # in process: only the period's run is under test
            assert dataset_job(names.reference).execute_in_process(instance=instance).success, "reference run failed"
        with dg.execute_job(
            _reconstructable(names.periods),
            instance,
            run_config={"execution": {"config": {"max_concurrent": 4}}},
            tags={"dagster/partition": period},
        ) as result:
            report = {
                "success": result.success,
                "steps": step_intervals(instance, result.run_id),
                "pool_limit": instance.event_log_storage.get_concurrency_info("duckdb").slot_count,
            }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
