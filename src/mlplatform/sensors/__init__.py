"""Sensors: the landing zone, drift-triggered retraining, failure alerts, and declarative automation."""

import dagster as dg

from mlplatform.sensors.alerts import run_failure_alert_sensor
from mlplatform.sensors.landing import landing_sensor
from mlplatform.sensors.retraining import drift_retrain_sensor

# Evaluates the assets' automation conditions (predictions and monitoring follow each new month).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "follow_new_data_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' declarative automation: predictions and monitoring follow each new month.",
)
SENSORS = [landing_sensor, drift_retrain_sensor, run_failure_alert_sensor, automation_sensor]
