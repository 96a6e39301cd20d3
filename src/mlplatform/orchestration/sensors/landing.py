"""A dataset's landing sensor: new or changed landing files request the runs that load them."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from mlplatform.catalog import latest_metadata
from mlplatform.data.landing import file_sha256, period_file, reference_file, scan
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.ingestion import SOURCE_HASH
from mlplatform.orchestration.jobs import job_names
from mlplatform.orchestration.resources.landing import LandingZone


def landing_sensor(dataset: Dataset, jobs: list[dg.UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    names = job_names(dataset)
    name = f"{dataset.name}_landing_sensor"
    in_flight = dg.RunsFilter(
        statuses=[
            dg.DagsterRunStatus.QUEUED,
            dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
        ],
        tags={"dagster/sensor_name": name},
    )

    @dg.sensor(
        name=name,
        description=f"Watches landing/{dataset.name}. A period whose files ({', '.join(dataset.sources)}) are new "
        f"or changed (by content hash, not time) gets a {names.periods} run for its partition"
        + (f"; changed reference files get a {names.reference} run first" if names.reference else "")
        + ". Periods load in order, one run at a time, because a period's features read the periods before it. "
        "Files before the first period, in the future, or misnamed are left alone and reported in the tick's log. "
        "The run key is the files' content hash, so the same bytes never run twice.",
        jobs=[job for job in jobs if job.name in (names.periods, names.reference)],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        hashes = _FileHashes(json.loads(context.cursor) if context.cursor else {})
        root = Path(landing.path)
        paths = {table: _reference(root, dataset, table) for table in dataset.reference}
        reference = {table: hashes.of(path) for table, path in paths.items() if path}
        if len(reference) < len(dataset.reference):
            return dg.SensorResult(skip_reason=f"{root / dataset.name} has no reference files yet (mlplatform seed)")
        if context.instance.get_runs_count(in_flight):
            # A period's features read the periods before it: periods load in order, one run at a time.
            return dg.SensorResult(skip_reason="waiting for the landing run in progress", cursor=hashes.cursor)
        if any(_loaded_hash(context, asset_key(dataset, t), None) != sha for t, sha in reference.items()):
            # Periods join the reference tables, so they wait for one reference run to load them first.
            key = "reference:" + ":".join(sha[:16] for sha in reference.values())
            return dg.SensorResult([dg.RunRequest(run_key=key, job_name=names.reference)], cursor=hashes.cursor)
        found = scan(root, dataset)
        for path, reason in found.ignored.items():
            context.log.info(f"not taken in: {path}: {reason}")
        for period in found.periods:
            files = {source: hashes.of(period_file(root, dataset, source, period)) for source in dataset.sources}
            loaded = {source: _loaded_hash(context, asset_key(dataset, raw_table(source)), period) for source in files}
            if any(loaded[source] != sha for source, sha in files.items()):
                run_key = ":".join([period, *(sha[:16] for sha in files.values())])
                request = dg.RunRequest(run_key=run_key, partition_key=period, job_name=names.periods)
                return dg.SensorResult([request], cursor=hashes.cursor)  # the earliest period first
        return dg.SensorResult(skip_reason="no new or changed landing files", cursor=hashes.cursor)

    return sensor


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


def _reference(root: Path, dataset: Dataset, table: str) -> Path | None:
    try:
        return reference_file(root, dataset, table)
    except FileNotFoundError:
        return None


def _loaded_hash(context: dg.SensorEvaluationContext, key: dg.AssetKey, partition: str | None) -> str | None:
    """The landing file hash that the latest materialization of ``key`` (one partition) loaded."""
    return (latest_metadata(context.instance, key, partition) or {}).get(SOURCE_HASH)
