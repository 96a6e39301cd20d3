"""Runs one month of the pipeline with the multiprocess executor on an instance configured by the shipped
dagster.yaml, and prints each step's start and end as JSON.

It runs as its own program (see test_concurrency.py): Dagster's step subprocesses do not start under pytest.
"""

import json
import sys
import tempfile
from pathlib import Path

import dagster as dg
import yaml

from mlplatform.definitions import build_definitions
from mlplatform.jobs import MONTHLY_JOB, REFERENCE_JOB

SHIPPED_CONFIG = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())


def monthly_pipeline() -> dg.JobDefinition:
    return build_definitions("local").resolve_job_def(MONTHLY_JOB)


def reference_data() -> dg.JobDefinition:
    return build_definitions("local").resolve_job_def(REFERENCE_JOB)


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


def main(month: str) -> None:
    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=SHIPPED_CONFIG, temp_dir=home) as instance,
    ):
        with dg.execute_job(dg.reconstructable(reference_data), instance) as reference:
            assert reference.success, "reference run failed"
        with dg.execute_job(
            dg.reconstructable(monthly_pipeline),
            instance,
            run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 4}}}},
            tags={"dagster/partition": month},
        ) as result:
            report = {
                "success": result.success,
                "steps": step_intervals(instance, result.run_id),
                "pool_limit": instance.event_log_storage.get_concurrency_info("duckdb").slot_count,
            }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
