"""A dataset's drift retrain sensor: a period with dataset drift or a champion whose AUC dropped requests a retrain."""

from __future__ import annotations

import json

import dagster as dg

from mlplatform.catalog import latest_metadata
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, TRAINING_SET_TABLE
from mlplatform.monitoring.champion import PeriodSignals, in_cooldown, retrain_reason
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE
from mlplatform.orchestration.assets.serving import TRIGGER_TAG
from mlplatform.orchestration.jobs import job_names

DRIFT_PERIOD_TAG, DRIFT_REASON_TAG, DRIFTED_FEATURES_TAG, AUC_AT_RISK_TAG, AUC_DROP_TAG = (
    "mlplatform/drift_period",
    "mlplatform/drift_reason",
    "mlplatform/drifted_features",
    "mlplatform/auc_at_risk",
    "mlplatform/auc_drop",
)


def drift_retrain_sensor(dataset: Dataset, jobs: list[dg.UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    training = job_names(dataset).training
    monitored = [asset_key(dataset, FEATURE_DRIFT), asset_key(dataset, PERFORMANCE)]
    settings = dataset.declaration.monitoring
    cooldown = settings.cooldown_periods

    @dg.sensor(
        name=f"{dataset.name}_drift_retrain_sensor",
        description=f"Reads the metadata of {dataset.name}'s feature_drift and model_performance as periods are "
        f"monitored (never the data). Under monitoring.retrain_policy {settings.retrain_policy!r}, "
        + (
            f"a period whose drift puts more ROC AUC at risk than retrain_cost ({settings.retrain_cost}), or where "
            "the champion already lost that much, "
            if settings.retrain_policy == "risk"
            else "a period with dataset drift, or where the champion's ROC AUC fell past the tolerance, "
        )
        + f"requests {training} with that period held out, tagged with why and which features drifted. "
        f"One drift episode gives one retrain: at most one per tick (the newest period), none within "
        f"monitoring.cooldown_periods ({cooldown}) of the last, and one run key per period and champion.",
        jobs=[job for job in jobs if job.name == training],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def sensor(context: dg.SensorEvaluationContext):
        state = {"after": None, "pending": [], "last_retrain": None, **json.loads(context.cursor or "{}")}
        touched, state["after"] = _periods_monitored_since(context.instance, monitored, state["after"])
        due, waiting = [], []
        for period in sorted(set(state["pending"]) | touched, key=dataset.periods.index):
            signals = period_signals(context.instance, dataset, period)
            if signals is None:
                waiting.append(period)  # the other monitoring asset has not caught up with this period yet
                continue
            reason = retrain_reason(signals, dataset.periods, settings)
            if reason and in_cooldown(dataset.periods, period, state["last_retrain"], cooldown):
                last = state["last_retrain"]
                context.log.info(f"{period}: {reason}; no retrain, within {cooldown} periods of the one for {last}")
            elif reason:
                due.append((period, signals, reason))
        state["pending"] = waiting
        if not due:
            return dg.SensorResult(skip_reason="no period calls for a retrain", cursor=json.dumps(state))
        # One retrain per tick, on the newest period that calls for one: it covers the episode and the most data,
        # and two training runs would share one training table.
        period, signals, reason = due[-1]
        if len(due) > 1:
            context.log.info(f"retraining on {period}; earlier periods {[p for p, *_ in due[:-1]]} are covered by it")
        state["last_retrain"] = period
        request = retrain_request(context.instance, dataset, period, signals, reason)
        return dg.SensorResult(run_requests=[request], cursor=json.dumps(state))

    return sensor


def training_run_config(dataset: Dataset, target: str, window: int) -> dict:
    """Run config of the training job holding ``target`` out, trained on ``window`` periods before it."""
    op = asset_key(dataset, TRAINING_SET_TABLE).to_python_identifier()
    return {"ops": {op: {"config": {"target_period": target, "window_periods": window}}}}


def retrain_request(
    instance: dg.DagsterInstance,
    dataset: Dataset,
    period: str,
    signals: PeriodSignals,
    reason: str,
    trigger: str = "drift",
) -> dg.RunRequest:
    """The training job with ``period`` held out, trained on up to ``training.window_periods`` before it (fewer
    when fewer periods have features), tagged with the trigger and why."""
    window = available_window(instance, dataset, period, dataset.declaration.training.window_periods)
    return dg.RunRequest(
        run_key=f"retrain:{period}:{signals.champion_version}",
        job_name=job_names(dataset).training,
        run_config=training_run_config(dataset, period, window),
        tags={
            TRIGGER_TAG: trigger,
            DRIFT_PERIOD_TAG: period,
            DRIFT_REASON_TAG: reason[:200],
            DRIFTED_FEATURES_TAG: ",".join(signals.drifted_features)[:200],
            # Every figure the decision was made on, so the run says why it exists.
            **({AUC_AT_RISK_TAG: f"{signals.auc_at_risk:.4f}"} if signals.auc_at_risk is not None else {}),
            **({AUC_DROP_TAG: f"{signals.auc_drop:.4f}"} if signals.auc_drop is not None else {}),
        },
    )


def available_window(instance: dg.DagsterInstance, dataset: Dataset, period: str, max_window: int) -> int:
    """How many consecutive periods right before ``period`` have features, up to ``max_window`` (at least 1)."""
    present = instance.get_materialized_partitions(asset_key(dataset, FEATURES_TABLE))
    window = 0
    while window < max_window and dataset.periods.shift(period, -(window + 1)) in present:
        window += 1
    return max(window, 1)


def period_signals(instance: dg.DagsterInstance, dataset: Dataset, period: str) -> PeriodSignals | None:
    """What feature_drift and model_performance recorded for ``period`` against the same champion; None until
    both have."""
    drift = latest_metadata(instance, asset_key(dataset, FEATURE_DRIFT), period)
    performance = latest_metadata(instance, asset_key(dataset, PERFORMANCE), period)
    if drift is None or performance is None or drift["champion_version"] != performance["champion_version"]:
        return None
    labelled = "auc_drop" in performance
    return PeriodSignals(
        period=period,
        champion_version=drift["champion_version"],
        champion_target_period=drift["champion_target_period"],
        dataset_drift=drift["dataset_drift"],
        drifted_share=drift["drifted_share"],
        drifted_features=tuple(drift["drifted_features"]),
        auc_drop=performance["auc_drop"] if labelled else None,
        degraded=labelled and performance["degraded"],
        auc_at_risk=drift.get("auc_at_risk"),
    )


def _periods_monitored_since(
    instance: dg.DagsterInstance, monitored: list[dg.AssetKey], after: int | None
) -> tuple[set[str], int | None]:
    periods, latest = set(), after
    for key in monitored:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000, ascending=True
        ).records
        periods |= {record.partition_key for record in records if record.partition_key}
        latest = max([latest or 0, *(record.storage_id for record in records)]) or None
    return periods, latest
