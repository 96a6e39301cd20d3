"""Sensors: each dataset's landing, first training and drift retrain sensors, and the platform-wide ones (failure
alerts and declarative automation)."""

import dagster as dg

from mlplatform.orchestration.sensors.alerts import run_failure_alert_sensor

# Evaluates the assets' automation conditions (predictions and monitoring follow each new period).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "follow_new_data_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' declarative automation: predictions and monitoring follow each new period.",
)
PLATFORM_SENSORS = [run_failure_alert_sensor, automation_sensor]
