"""A dataset's landing sensor: new or changed landing files request the runs that load them."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlplatform.catalog import latest_metadata
from mlplatform.data.landing import file_sha256, period_file, reference_file, scan
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.ingestion import AFTER_TAG, SOURCE_HASH
from mlplatform.orchestration.jobs import LANDING_TAG, job_names
from mlplatform.orchestration.resources.landing import LandingZone


def landing_sensor(dataset: Dataset, jobs: list[dg.UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    names = job_names(dataset)
    name = landing_sensor_name(dataset)
    in_flight = dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/sensor_name": name})

    @dg.sensor(
        name=name,
        description=f"Watches landing/{dataset.name}. Every period whose files ({', '.join(dataset.sources)}) are "
        f"new or changed (by content hash, not time) gets a {names.periods} run for its partition, all in one tick"
        + (f"; changed reference files get a {names.reference} run before them" if names.reference else "")
        + ". The run queue starts them one at a time, in period order (dagster.yaml's mlplatform/landing limit), "
        "because a period's features read the periods before it; new files wait until those runs are done. "
        "When a run fails, the runs queued after it load nothing (held back: their features would read a hole) and "
        "no later period is asked for until the failed files change. The run key is the period's files' content "
        "hash and that of the files not loaded before it, so the same bytes over the same history never run twice; "
        "a period held back runs once the files before it are loaded. Files before the "
        "first period, in the future, or misnamed are left alone and reported in the tick's log.",
        jobs=[job for job in jobs if job.name in (names.periods, names.reference)],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        hashes = FileHashes(json.loads(context.cursor) if context.cursor else {})
        root = Path(landing.path)
        if reference_hashes(dataset, root, hashes) is None:
            return dg.SensorResult(skip_reason=f"{root / dataset.name} has no reference files yet (mlplatform seed)")
        if context.instance.get_runs_count(in_flight):
            # Periods load in order: new files wait until the runs asked for are done.
            return dg.SensorResult(skip_reason="waiting for the landing runs in progress", cursor=hashes.cursor)
        requests = landing_requests(context.instance, dataset, root, hashes, context.log)
        if not requests:
            return dg.SensorResult(skip_reason="no new or changed landing files to load", cursor=hashes.cursor)
        return dg.SensorResult(requests, cursor=hashes.cursor)

    return sensor


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def landing_sensor_name(dataset: Dataset) -> str:
    return f"{dataset.name}_landing_sensor"


def landing_requests(
    instance: dg.DagsterInstance,
    dataset: Dataset,
    root: Path,
    hashes: FileHashes,
    log: logging.Logger | None = None,
) -> list[dg.RunRequest]:
    """What the landing sensor asks for when no landing run is in flight, in the order to run: the reference run
    when a reference file is not the one loaded (periods join the reference tables), then a run per waiting period,
    in period order, up to one whose files (or the reference files) already failed to load. ``log`` hears of files
    not taken in and of what is held back."""
    names, sensor_name = job_names(dataset), landing_sensor_name(dataset)
    reference = reference_hashes(dataset, root, hashes)
    if reference is None:
        return []
    requests: list[dg.RunRequest] = []
    not_loaded = []
    if any(_loaded_hash(instance, asset_key(dataset, t), None) != sha for t, sha in reference.items()):
        key = "reference:" + ":".join(sha[:16] for sha in reference.values())
        if _failed(instance, sensor_name, key):
            if log:
                log.info("the reference files failed to load: periods wait until they change")
            return []
        requests.append(dg.RunRequest(run_key=key, job_name=names.reference, tags={LANDING_TAG: dataset.name}))
        not_loaded.append(":".join(["reference", *reference.values()]))
    found = scan(root, dataset)
    for path, reason in found.ignored.items():
        if log:
            log.info(f"not taken in: {path}: {reason}")
    for waiting in waiting_periods(instance, dataset, root, found.periods, hashes, not_loaded):
        if _failed(instance, sensor_name, waiting.run_key):
            if log:
                log.info(f"{waiting.period} failed to load these files: later periods wait until they change")
            break
        # The queue starts them in this order; each names the run before it, and loads nothing if that one failed.
        tags = {LANDING_TAG: dataset.name, **({AFTER_TAG: requests[-1].run_key} if requests else {})}
        requests.append(
            dg.RunRequest(run_key=waiting.run_key, partition_key=waiting.period, job_name=names.periods, tags=tags)
        )
    return requests


def asked_for(instance: dg.DagsterInstance, dataset: Dataset, run_key: str) -> bool:
    """Whether the dataset's landing sensor has a run with ``run_key`` (Dagster never starts a run key twice)."""
    return bool(_runs_with_key(instance, landing_sensor_name(dataset), run_key))


@dataclass(frozen=True)
class WaitingPeriod:
    period: str
    run_key: str


def waiting_periods(
    instance: dg.DagsterInstance,
    dataset: Dataset,
    root: Path,
    periods: list[str],
    hashes: FileHashes,
    not_loaded: list[str],
) -> list[WaitingPeriod]:
    """The ``periods`` (in order) whose landing files are not the ones loaded, each with its run key: the period,
    its files' hashes and, when files before it are not loaded either (``not_loaded``: the reference files', then
    earlier periods'), a hash of theirs (its features read them)."""
    waiting, not_loaded = [], list(not_loaded)
    for period in periods:
        files = [hashes.of(period_file(root, dataset, source, period)) for source in dataset.sources]
        loaded = [_loaded_hash(instance, asset_key(dataset, raw_table(source)), period) for source in dataset.sources]
        if loaded == files:
            continue
        run_key = ":".join([period, *(sha[:16] for sha in files)])
        if not_loaded:
            run_key += ":after:" + hashlib.sha256(" ".join(not_loaded).encode()).hexdigest()[:16]
        waiting.append(WaitingPeriod(period, run_key))
        not_loaded.append(":".join([period, *files]))
    return waiting


def reference_hashes(dataset: Dataset, root: Path, hashes: FileHashes) -> dict[str, str] | None:
    """The hash of each reference file of ``dataset``; None while one is missing."""
    paths = {table: _reference(root, dataset, table) for table in dataset.reference}
    if not all(paths.values()):
        return None
    return {table: hashes.of(path) for table, path in paths.items()}


def _failed(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    runs = _runs_with_key(instance, sensor_name, run_key)
    return bool(runs) and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _runs_with_key(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> list[dg.DagsterRun]:
    tags = {"dagster/run_key": run_key, "dagster/sensor_name": sensor_name}
    return list(instance.get_runs(dg.RunsFilter(tags=tags), limit=1))


class FileHashes:
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


def _loaded_hash(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None) -> str | None:
    """The landing file hash that the latest materialization of ``key`` (one partition) loaded."""
    return (latest_metadata(instance, key, partition) or {}).get(SOURCE_HASH)
