"""A dataset's first training sensor: a dataset with no champion trains its first model by itself once its landing
files are loaded, then has the periods waiting for it scored and monitored, with no one at the Launchpad."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from mlplatform.catalog import latest_metadata
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PREDICTIONS_TABLE
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.serving import CHAMPION, TRIGGER_TAG
from mlplatform.orchestration.jobs import DATASET_TAG, JOB_TAG, job_names, period_range_tags
from mlplatform.orchestration.resources.landing import LandingZone
from mlplatform.orchestration.sensors.landing import IN_FLIGHT, FileHashes, asked_for, landing_requests
from mlplatform.orchestration.sensors.retraining import available_window, training_run_config

FIRST_TRAINING = "first_training"  # the training run's mlplatform/trigger, recorded as its promotion's reason
CATCH_UP = "catch_up"  # the mlplatform/trigger of the run scoring the first champion's waiting periods
# A fresh dataset's first model and first scores are what the person waits for: the run queue starts them ahead of
# the runs queued before them (another dataset's landing runs), as it starts higher priorities first.
AHEAD_IN_THE_QUEUE = {"dagster/priority": "1"}


def first_training_sensor(dataset: Dataset, jobs: list[dg.UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    training, scoring = job_names(dataset).training, job_names(dataset).scoring
    window_periods = dataset.declaration.training.window_periods
    # Landing runs (a period's features may still change the target) and training runs (a first model on its way).
    busy = dg.RunsFilter(
        statuses=IN_FLIGHT,
        tags={DATASET_TAG: dataset.name, JOB_TAG: ["reference_data", "period_pipeline", "training"]},
    )

    @dg.sensor(
        name=f"{dataset.name}_first_training_sensor",
        description=f"While {dataset.model.name} has no champion (read from {dataset.name}/champion_model's "
        f"metadata): once no landing or training run of {dataset.name} is queued or in progress, no landing file "
        "waits for its landing sensor, and features exist for a target period (the newest with features) and the "
        f"period before it, requests {training} held out on that period and trained on up to "
        f"training.window_periods ({window_periods}) periods before it, tagged mlplatform/trigger={FIRST_TRAINING}. "
        "Once per target period (its run key): a model that fails the gate is tried again when a newer period has "
        f"features. Once the first champion exists and no period is scored yet, requests {scoring} for every period "
        "with features, one run per range of consecutive periods, unless declarative automation already asked for "
        "them; from then on, predictions and monitoring follow each new period by declarative automation. A person "
        "can still train from the Launchpad at any time.",
        jobs=[job for job in jobs if job.name in (training, scoring)],
        default_status=dg.DefaultSensorStatus.RUNNING,
        # Cheap ticks (metadata and run counts), and each one a fresh dataset waits for comes off its time to value.
        minimum_interval_seconds=10,
    )
    def sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        hashes = FileHashes(json.loads(context.cursor) if context.cursor else {})
        champion = (latest_metadata(context.instance, asset_key(dataset, CHAMPION)) or {}).get("champion_version")
        if champion not in (None, "none"):
            return _catch_up(context, dataset, champion)
        if context.instance.get_runs_count(busy):
            return dg.SensorResult(
                skip_reason="waiting for the landing or training runs in progress", cursor=hashes.cursor
            )
        unasked = [
            request.partition_key or "reference tables"
            for request in landing_requests(context.instance, dataset, Path(landing.path), hashes)
            if not asked_for(context.instance, dataset, request.run_key)
        ]
        if unasked:
            return dg.SensorResult(
                skip_reason=f"waiting for landing files to load: {', '.join(unasked)}", cursor=hashes.cursor
            )
        featured = set(context.instance.get_materialized_partitions(asset_key(dataset, FEATURES_TABLE)))
        target = max(featured, key=dataset.periods.index, default=None)
        if target is None or dataset.periods.shift(target, -1) not in featured:
            reason = f"features for a period and the period before it are needed first (have {sorted(featured)})"
            return dg.SensorResult(skip_reason=reason, cursor=hashes.cursor)
        window = available_window(context.instance, dataset, target, window_periods)
        request = dg.RunRequest(
            run_key=f"{FIRST_TRAINING}:{target}",
            job_name=training,
            run_config=training_run_config(dataset, target, window),
            tags={TRIGGER_TAG: FIRST_TRAINING, **AHEAD_IN_THE_QUEUE},
        )
        return dg.SensorResult([request], cursor=hashes.cursor)

    return sensor


def _catch_up(context: dg.SensorEvaluationContext, dataset: Dataset, champion: str) -> dg.SensorResult:
    """The first champion's periods, scored and monitored straight away: declarative automation would ask for them
    too, but a tick later and through a backfill, whose daemon launches its runs on its own 30 s loop."""
    predictions = asset_key(dataset, PREDICTIONS_TABLE)
    if context.instance.get_materialized_partitions(predictions):
        reason = f"{dataset.model.name} has a champion and scored periods: new ones follow by declarative automation"
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    if _backfill_requested(context.instance, predictions):
        reason = "declarative automation has asked for the first champion's periods already"
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    featured = context.instance.get_materialized_partitions(asset_key(dataset, FEATURES_TABLE))
    requests = [
        dg.RunRequest(
            run_key=f"{CATCH_UP}:{champion}:{first}..{last}",
            job_name=job_names(dataset).scoring,
            tags={TRIGGER_TAG: CATCH_UP, **AHEAD_IN_THE_QUEUE, **period_range_tags(first, last)},
        )
        for first, last in dataset.periods.ranges(list(featured))
    ]
    return dg.SensorResult(requests, cursor=context.cursor)


def _backfill_requested(instance: dg.DagsterInstance, key: dg.AssetKey) -> bool:
    """Whether a backfill still being carried out targets ``key`` (Dagster has no public API for backfills)."""
    from dagster._core.execution.backfill import BulkActionStatus

    requested = instance.get_backfills(status=BulkActionStatus.REQUESTED)
    return any(key in (backfill.asset_selection or ()) for backfill in requested)
