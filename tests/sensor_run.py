"""Runs one run a sensor requested, as the daemon would launch it: in its own process, on the instance in
$DAGSTER_HOME, with the sensor's tags. ``python sensor_run.py <sensor> <job> <partition> <run key>`` (see
test_concurrency.py, which evaluates the sensor); prints the run's id and whether it succeeded as JSON.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from mlplatform.definitions import build_definitions


def main(sensor: str, job: str, partition: str, run_key: str) -> None:
    tags = {"dagster/sensor_name": sensor, "dagster/run_key": run_key}
    with dg.DagsterInstance.get() as instance:
        result = (
            build_definitions()
            .resolve_job_def(job)
            .execute_in_process(instance=instance, partition_key=partition, tags=tags, raise_on_error=False)
        )
    print(json.dumps({"run_id": result.run_id, "success": result.success}))


if __name__ == "__main__":
    main(*sys.argv[1:])
