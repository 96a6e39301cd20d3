"""``drift_retrain_sensor``: a month with dataset drift or a champion whose AUC dropped requests a retrain."""

from __future__ import annotations

import json

import dagster as dg

from mlplatform.assets.serving import TRIGGER_TAG
from mlplatform.catalog import latest_metadata
from mlplatform.jobs import TRAINING_JOB, train_delay_model
from mlplatform.monitoring import MonthSignals, in_cooldown, retrain_reason
from mlplatform.params import param
from mlplatform.training_set import window_months

MONITORED = ("feature_drift", "model_performance")
DRIFT_MONTH_TAG, DRIFT_REASON_TAG, DRIFTED_FEATURES_TAG = (
    "mlplatform/drift_month",
    "mlplatform/drift_reason",
    ("mlplatform/drifted_features"),
)


@dg.sensor(
    name="drift_retrain_sensor",
    description="Reads the metadata of feature_drift and model_performance as months are monitored (never the "
    "data). A month with dataset drift, or where the champion's ROC AUC fell past the tolerance, requests "
    "train_delay_model with that month held out, tagged with why and which features drifted. One drift episode "
    "gives one retrain: at most one per tick (the newest month), none within monitoring.cooldown_months of the "
    "last, and one run key per month and champion.",
    jobs=[train_delay_model],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    state = {"after": None, "pending": [], "last_retrain_month": None, **json.loads(context.cursor or "{}")}
    touched, state["after"] = _months_monitored_since(context.instance, state["after"])
    cooldown = param("monitoring", "cooldown_months")
    due, waiting = [], []
    for month in sorted(set(state["pending"]) | touched):
        signals = month_signals(context.instance, month)
        if signals is None:
            waiting.append(month)  # the other monitoring asset has not caught up with this month yet
            continue
        reason = retrain_reason(signals)
        if reason and in_cooldown(month, state["last_retrain_month"], cooldown):
            last = state["last_retrain_month"]
            context.log.info(f"{month}: {reason}; no retrain, within {cooldown} months of the one for {last}")
        elif reason:
            due.append((month, signals, reason))
    state["pending"] = waiting
    if not due:
        return dg.SensorResult(skip_reason="no month calls for a retrain", cursor=json.dumps(state))
    # One retrain per tick, on the newest month that calls for one: it covers the episode and the most data,
    # and two training runs would share one training table.
    month, signals, reason = due[-1]
    if len(due) > 1:
        context.log.info(f"retraining on {month}; earlier months {[m for m, *_ in due[:-1]]} are covered by it")
    state["last_retrain_month"] = month
    request = retrain_request(context.instance, month, signals, reason)
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(state))


def retrain_request(
    instance: dg.DagsterInstance, month: str, signals: MonthSignals, reason: str, trigger: str = "drift"
) -> dg.RunRequest:
    """The training job with ``month`` held out, trained on up to ``training.window_months`` before it (fewer
    when fewer months have features), tagged with the trigger and why."""
    window = available_window(instance, month, param("training", "window_months"))
    return dg.RunRequest(
        run_key=f"retrain:{month}:{signals.champion_version}",
        job_name=TRAINING_JOB,
        run_config={"ops": {"training_set": {"config": {"target_month": month, "window_months": window}}}},
        tags={
            TRIGGER_TAG: trigger,
            DRIFT_MONTH_TAG: month,
            DRIFT_REASON_TAG: reason[:200],
            DRIFTED_FEATURES_TAG: ",".join(signals.drifted_features)[:200],
        },
    )


def available_window(instance: dg.DagsterInstance, month: str, max_window: int) -> int:
    """How many consecutive months right before ``month`` have features, up to ``max_window`` (at least 1)."""
    present = instance.get_materialized_partitions(dg.AssetKey("flight_features"))
    window = 0
    while window < max_window and window_months(month, window + 1)[0] in present:
        window += 1
    return max(window, 1)


def month_signals(instance: dg.DagsterInstance, month: str) -> MonthSignals | None:
    """What feature_drift and model_performance recorded for ``month`` against the same champion; None until
    both have."""
    drift, performance = (latest_metadata(instance, asset, month) for asset in MONITORED)
    if drift is None or performance is None or drift["champion_version"] != performance["champion_version"]:
        return None
    labelled = "auc_drop" in performance
    return MonthSignals(
        month=month,
        champion_version=drift["champion_version"],
        champion_target_month=drift["champion_target_month"],
        dataset_drift=drift["dataset_drift"],
        drifted_share=drift["drifted_share"],
        drifted_features=tuple(drift["drifted_features"]),
        auc_drop=performance["auc_drop"] if labelled else None,
        degraded=labelled and performance["degraded"],
    )


def _months_monitored_since(instance: dg.DagsterInstance, after: int | None) -> tuple[set[str], int | None]:
    months, latest = set(), after
    for asset in MONITORED:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=after), limit=1000, ascending=True
        ).records
        months |= {record.partition_key for record in records if record.partition_key}
        latest = max([latest or 0, *(record.storage_id for record in records)]) or None
    return months, latest
