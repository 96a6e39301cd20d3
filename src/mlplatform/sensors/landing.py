"""``landing_sensor``: new or changed landing files request the runs that load them."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from mlplatform.assets.ingestion import SOURCE_HASH
from mlplatform.catalog import latest_metadata
from mlplatform.jobs import MONTHLY_JOB, REFERENCE_JOB, monthly_pipeline, reference_data
from mlplatform.landing import REFERENCE_DATASETS, file_sha256, landed_months, monthly_file, reference_file
from mlplatform.resources.landing import LandingZone


@dg.sensor(
    name="landing_sensor",
    description="Watches the landing zone. A month whose flights or weather file is new or changed (by content "
    "hash, not time) gets a monthly_pipeline run for its partition; changed reference files get a reference_data "
    "run first. Months load in order, one run at a time, because a month's features read the months before it. "
    "The run key is the files' content hash, so the same bytes never run twice.",
    jobs=[monthly_pipeline, reference_data],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    hashes = _FileHashes(json.loads(context.cursor) if context.cursor else {})
    root = Path(landing.path)
    reference = {name: hashes.of(path) for name in REFERENCE_DATASETS if (path := _reference_path(root, name))}
    if len(reference) < len(REFERENCE_DATASETS):
        return dg.SensorResult(skip_reason=f"{root} has no reference files yet (mlplatform seed fills it)")
    if context.instance.get_runs_count(_LANDING_RUNS_IN_FLIGHT):
        # A month's features read the months before it: months load in order, one run at a time.
        return dg.SensorResult(skip_reason="waiting for the landing run in progress", cursor=hashes.cursor)
    if any(_loaded_hash(context, name, None) != sha for name, sha in reference.items()):
        # Months join the reference tables, so they wait for one reference run to load them first.
        key = "reference:" + ":".join(sha[:16] for sha in reference.values())
        return dg.SensorResult([dg.RunRequest(run_key=key, job_name=REFERENCE_JOB)], cursor=hashes.cursor)
    for month in landed_months(root):
        files = {dataset: hashes.of(monthly_file(root, dataset, month)) for dataset in ("flights", "weather")}
        if any(_loaded_hash(context, f"raw_{dataset}", month) != sha for dataset, sha in files.items()):
            run_key = f"{month}:{files['flights'][:16]}:{files['weather'][:16]}"
            request = dg.RunRequest(run_key=run_key, partition_key=month, job_name=MONTHLY_JOB)
            return dg.SensorResult([request], cursor=hashes.cursor)  # the earliest month first
    return dg.SensorResult(skip_reason="no new or changed landing files", cursor=hashes.cursor)


_LANDING_RUNS_IN_FLIGHT = dg.RunsFilter(
    job_name=None,
    statuses=[
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ],
    tags={"dagster/sensor_name": "landing_sensor"},
)


class _FileHashes:
    """sha256 of files, reusing the cursor's hash while a file's size and modification time are unchanged."""

    def __init__(self, cache: dict[str, list]):
        self.cache = cache

    @property
    def cursor(self) -> str:
        return json.dumps(self.cache, sort_keys=True)

    def of(self, path: Path) -> str:
        stat = path.stat()
        key, stamp = str(path), [stat.st_mtime_ns, stat.st_size]
        if self.cache.get(key, [None, None, None])[:2] != stamp:
            self.cache[key] = [*stamp, file_sha256(path)]
        return self.cache[key][2]


def _reference_path(root: Path, name: str) -> Path | None:
    try:
        return reference_file(root, name)
    except FileNotFoundError:
        return None


def _loaded_hash(context: dg.SensorEvaluationContext, asset: str, partition: str | None) -> str | None:
    """The landing file hash that the latest materialization of ``asset`` (one partition) loaded."""
    return (latest_metadata(context.instance, asset, partition) or {}).get(SOURCE_HASH)
