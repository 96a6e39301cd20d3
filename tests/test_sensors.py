"""The sensors, evaluated through build_sensor_context against ephemeral instances holding real materializations."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import dagster as dg
import pytest

from mlplatform.assets import ingestion
from mlplatform.assets.serving import TRIGGER_TAG
from mlplatform.landing import file_sha256
from mlplatform.resources import resources_for
from mlplatform.resources.alerts import AlertWebhook
from mlplatform.resources.landing import LandingZone
from mlplatform.sensors.alerts import run_failure_alert_sensor
from mlplatform.sensors.landing import landing_sensor
from mlplatform.sensors.retraining import DRIFT_REASON_TAG, DRIFTED_FEATURES_TAG, drift_retrain_sensor


@pytest.fixture
def two_months(data_dir):
    """The landing zone with only January and February (and the reference files)."""
    for dataset in ("flights", "weather"):
        for path in (data_dir / "landing" / dataset).iterdir():
            if path.stem not in ("2013-01", "2013-02"):
                path.unlink()
    return data_dir / "landing"


def _tick(instance, landing, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    result = landing_sensor(context)
    return result, result.cursor


def _materialize(instance, assets, partition=None):
    dg.materialize(assets, instance=instance, resources=resources_for("local"), partition_key=partition)


def test_landing_sensor_loads_reference_first_then_new_and_changed_months_once(two_months):
    with dg.DagsterInstance.ephemeral() as instance:
        first, cursor = _tick(instance, two_months)
        [reference] = first.run_requests
        assert reference.job_name == "reference_data" and reference.run_key.startswith("reference:")
        _materialize(instance, [ingestion.airlines, ingestion.airports, ingestion.planes])

        second, cursor = _tick(instance, two_months, cursor)  # months in order, one at a time
        assert [(r.job_name, r.partition_key) for r in second.run_requests] == [("monthly_pipeline", "2013-01")]
        january = two_months / "flights" / "2013-01.csv"
        assert second.run_requests[0].run_key.startswith(f"2013-01:{file_sha256(january)[:16]}:")
        assert json.loads(cursor)[str(january)][2] == file_sha256(january)  # hashed once, kept by size and mtime

        _materialize(instance, [ingestion.raw_flights, ingestion.raw_weather], "2013-01")
        third, cursor = _tick(instance, two_months, cursor)
        assert [r.partition_key for r in third.run_requests] == ["2013-02"]  # January's bytes are loaded

        lines = january.read_text().splitlines()
        january.write_text("\n".join(lines[:-1]) + "\n")  # a corrected file: one flight fewer
        fourth, cursor = _tick(instance, two_months, cursor)
        [corrected] = fourth.run_requests
        assert corrected.partition_key == "2013-01" and corrected.run_key != second.run_requests[0].run_key

        in_flight = {"dagster/sensor_name": "landing_sensor"}
        instance.add_run(dg.DagsterRun(job_name="monthly_pipeline", status=dg.DagsterRunStatus.STARTED, tags=in_flight))
        waiting, _ = _tick(instance, two_months, cursor)
        assert not waiting.run_requests and "in progress" in waiting.skip_reason.skip_message


def test_landing_sensor_waits_for_the_reference_files(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        result, _ = _tick(instance, tmp_path)
    assert not result.run_requests and "no reference files" in result.skip_reason.skip_message


def _monitored(instance, month, champion="v1", drift=False, auc_drop=0.0, degraded=False, labelled=True):
    drifted = ["temp", "dewp", "precip"] if drift else []
    feature_drift = {
        "dataset_drift": drift,
        "drifted_share": 0.6 if drift else 0.1,
        "drifted_features": dg.MetadataValue.json(drifted),
        "champion_version": champion,
        "champion_target_month": "2013-02",
    }
    performance = {"champion_version": champion}
    performance |= {"auc_drop": auc_drop, "degraded": degraded} if labelled else {"labels": "not yet"}
    for asset, metadata in (("feature_drift", feature_drift), ("model_performance", performance)):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=month, metadata=metadata))


def _retrain_tick(instance, cursor=None):
    result = drift_retrain_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result.run_requests, result.cursor


def test_drift_requests_one_retrain_per_episode_with_why_in_the_tags():
    with dg.DagsterInstance.ephemeral() as instance:
        _monitored(instance, "2013-02", drift=True)  # the champion's own held-out month: nothing to learn
        _monitored(instance, "2013-03")
        requests, cursor = _retrain_tick(instance)
        assert requests == []

        _monitored(instance, "2013-04", drift=True)
        [retrain], cursor = _retrain_tick(instance, cursor)
        assert retrain.job_name == "train_delay_model" and retrain.run_key == "retrain:2013-04:v1"
        assert retrain.run_config["ops"]["training_set"]["config"] == {"target_month": "2013-04", "window_months": 1}
        assert retrain.tags[TRIGGER_TAG] == "drift" and retrain.tags[DRIFTED_FEATURES_TAG] == "temp,dewp,precip"
        assert "dataset drift (60% of features" in retrain.tags[DRIFT_REASON_TAG]

        assert _retrain_tick(instance, cursor)[0] == []  # nothing new: nothing requested again
        _monitored(instance, "2013-05", drift=True)  # the same episode, within the cooldown
        requests, cursor = _retrain_tick(instance, cursor)
        assert requests == []
        _monitored(instance, "2013-06", champion="v2", auc_drop=0.08, degraded=True)  # past the cooldown
        [retrain], cursor = _retrain_tick(instance, cursor)
        assert retrain.run_key == "retrain:2013-06:v2" and "ROC AUC 0.080 below" in retrain.tags[DRIFT_REASON_TAG]


def test_several_drifted_months_in_one_tick_give_one_retrain_on_the_newest():
    with dg.DagsterInstance.ephemeral() as instance:
        for month in ("2013-04", "2013-05", "2013-06", "2013-07"):
            _monitored(instance, month, drift=True)
        [retrain], cursor = _retrain_tick(instance)
    assert retrain.tags["mlplatform/drift_month"] == "2013-07" and json.loads(cursor)["last_retrain_month"] == "2013-07"


def test_a_month_waits_until_both_monitors_saw_the_same_champion():
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "feature_drift",
                partition="2013-04",
                metadata={
                    "dataset_drift": True,
                    "drifted_share": 0.7,
                    "drifted_features": ["temp"],
                    "champion_version": "v1",
                    "champion_target_month": "2013-02",
                },
            )
        )
        requests, cursor = _retrain_tick(instance)
        assert requests == [] and json.loads(cursor)["pending"] == ["2013-04"]
        _monitored(instance, "2013-04", drift=True, labelled=False)
        [retrain], cursor = _retrain_tick(instance, cursor)
        assert retrain.tags["mlplatform/drift_month"] == "2013-04" and json.loads(cursor)["pending"] == []


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Webhook.received = []
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Webhook.received
    server.shutdown()


def test_a_failed_run_is_logged_and_posted_to_the_webhook(data_dir, webhook, caplog):
    url, received = webhook
    shutil.rmtree(data_dir / "landing" / "flights")
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [ingestion.raw_flights],
            instance=instance,
            resources=resources_for("local"),
            partition_key="2013-05",
            raise_on_error=False,
        )
        run = instance.get_run_by_id(result.run_id)
        failure = next(event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor", dagster_instance=instance, dagster_run=run, dagster_event=failure
        ).for_run_failure()
        run_failure_alert_sensor(context, alerts=AlertWebhook(webhook_url=url))
        run_failure_alert_sensor(context, alerts=AlertWebhook(webhook_url="http://127.0.0.1:9/nothing-listens"))
    [alert] = received
    assert alert["run_id"] == result.run_id and alert["partition"] == "2013-05"
    assert alert["failed_steps"] == ["raw_flights"]
    assert "run failed" in caplog.text and "alert webhook failed" in caplog.text
