"""``run_failure_alert_sensor``: each failed run becomes a structured log event and, if configured, a webhook POST."""

import dagster as dg

from mlplatform.alerts import send_alert
from mlplatform.orchestration.resources.alerts import AlertWebhook


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description="On every failed run: a structured log event (run id, job, partition, failed steps, error) and, "
    "when MLPLATFORM_ALERT_WEBHOOK is set, the same event POSTed as JSON to that webhook.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertWebhook):
    run = context.dagster_run
    event = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "failed_steps": sorted({event.step_key for event in context.get_step_failure_events() if event.step_key}),
        "error": context.failure_event.message,
        "trigger": run.tags.get("mlplatform/trigger"),
    }
    send_alert(event, alerts.webhook_url or None)
