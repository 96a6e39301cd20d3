"""The sensors, evaluated through build_sensor_context against test instances holding real materializations."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import threading
import time
from dataclasses import replace
from functools import cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
import yaml
from conftest import seed_periods
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from mlplatform.data.landing import file_sha256, period_file, reference_file
from mlplatform.datasets import Dataset, all_datasets
from mlplatform.datasets.dataset import FEATURES_TABLE, PREDICTIONS_TABLE, raw_table
from mlplatform.datasets.declaration import MonitoringSection
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.ingestion import AFTER_TAG, SOURCE_HASH
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE
from mlplatform.orchestration.assets.serving import CHAMPION, TRIGGER_TAG
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.jobs import DATASET_TAG, JOB_TAG, LANDING_TAG, dataset_jobs, job_names
from mlplatform.orchestration.resources import resources_for
from mlplatform.orchestration.resources.alerts import AlertWebhook
from mlplatform.orchestration.resources.landing import LandingZone
from mlplatform.orchestration.sensors.alerts import run_failure_alert_sensor
from mlplatform.orchestration.sensors.retraining import (
    AUC_AT_RISK_TAG,
    AUC_DROP_TAG,
    DRIFT_PERIOD_TAG,
    DRIFT_REASON_TAG,
    DRIFTED_FEATURES_TAG,
    drift_retrain_sensor,
)

ROOT = Path(__file__).resolve().parents[1]


@cache
def _definitions(name: str) -> dg.Definitions:
    return dataset_definitions(all_datasets()[name])


def _sensor(dataset: Dataset, kind: str) -> dg.SensorDefinition:
    return next(sensor for sensor in _definitions(dataset.name).sensors if sensor.name == f"{dataset.name}_{kind}")


def _materialize(instance, dataset: Dataset, names: list[str], partition: str | None = None):
    return dg.materialize(
        list(_definitions(dataset.name).assets),
        selection=[asset_key(dataset, name) for name in names],
        instance=instance,
        resources=resources_for("local"),
        partition_key=partition,
    )


def _tick(instance, dataset: Dataset, landing: Path, cursor: str | None = None, log: logging.Handler | None = None):
    """One evaluation of the dataset's landing sensor; ``log`` also receives the lines the tick logs."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    if log:
        context.log.addHandler(log)
    result = _sensor(dataset, "landing_sensor")(context)
    return result, result.cursor


def _requested(result) -> list[tuple[str, str | None]]:
    return [(request.job_name, request.partition_key) for request in result.run_requests]


def _keep_only(landing: Path, dataset: Dataset, periods: list[str]) -> None:
    for source in dataset.sources:
        for path in (landing / dataset.name / source).iterdir():
            if path.stem not in periods:
                path.unlink()


def land_a_year_later(landing: Path, period: str = "2013-01") -> str:
    """Flights' and weather's landing files of ``period`` copied one year on (year + 1, time_hour + 1 year), as
    the next year's files would arrive; returns the new period."""
    later = f"{int(period[:4]) + 1}{period[4:]}"
    for source in ("flights", "weather"):
        with (landing / "flights" / source / f"{period}.csv").open(newline="") as handle:
            header, *rows = list(csv.reader(handle))
        year, time_hour = header.index("year"), header.index("time_hour")
        for row in rows:
            row[year] = str(int(row[year]) + 1)
            row[time_hour] = f"{int(row[time_hour][:4]) + 1}{row[time_hour][4:]}"  # 2013-01-01T10:00:00Z
        with (landing / "flights" / source / f"{later}.csv").open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return later


def test_landing_sensor_asks_for_every_waiting_period_in_one_tick_in_order(dataset, data_dir):
    landing = data_dir / "landing"
    first, second, third = seed_periods(dataset)[:3]
    _keep_only(landing, dataset, [first, second, third])
    names = job_names(dataset)
    with dg.instance_for_test() as instance:
        result, cursor = _tick(instance, dataset, landing)
        if dataset.reference:  # periods join the reference tables: they run after its run, held back if it fails
            reference, *periods = result.run_requests
            assert reference.job_name == names.reference and reference.run_key.startswith("reference:")
            assert reference.tags == {LANDING_TAG: dataset.name}
            assert [request.partition_key for request in periods] == [first, second, third]
            assert periods[0].tags[AFTER_TAG] == reference.run_key and ":after:" in periods[0].run_key
            _materialize(instance, dataset, dataset.reference)
            result, cursor = _tick(instance, dataset, landing, cursor)

        # Every waiting period in one tick, in period order, keyed by its files' bytes (and by those of the periods
        # not loaded before it); the run queue starts runs with the same mlplatform/landing value one at a time, in
        # the order asked, and each run names the one before it.
        assert _requested(result) == [(names.periods, first), (names.periods, second), (names.periods, third)]
        keys = [request.run_key for request in result.run_requests]
        files = [period_file(landing, dataset, source, first) for source in dataset.sources]
        assert keys[0] == ":".join([first, *(file_sha256(path)[:16] for path in files)])
        assert keys[1].startswith(f"{second}:") and ":after:" in keys[1] and len(set(keys)) == 3
        assert [request.tags.get(AFTER_TAG) for request in result.run_requests] == [None, keys[0], keys[1]]
        assert all(request.tags[LANDING_TAG] == dataset.name for request in result.run_requests)
        assert all(json.loads(cursor)[str(path)][2] == file_sha256(path) for path in files)  # kept by size and mtime
        assert _queue_limit(LANDING_TAG) == {
            "key": LANDING_TAG,
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        }

        in_flight = {"dagster/sensor_name": f"{dataset.name}_landing_sensor"}
        running = dg.DagsterRun(job_name=names.periods, status=dg.DagsterRunStatus.STARTED, tags=in_flight)
        instance.add_run(running)
        waiting, _ = _tick(instance, dataset, landing, cursor)
        assert not waiting.run_requests and "in progress" in waiting.skip_reason.skip_message
        instance.delete_run(running.run_id)

        raw = [raw_table(source) for source in dataset.sources]
        _materialize(instance, dataset, raw, first)
        result, cursor = _tick(instance, dataset, landing, cursor)
        # The first period's bytes are loaded: skipped. The others, once held back behind it, run under new keys.
        assert _requested(result) == [(names.periods, second), (names.periods, third)]
        assert result.run_requests[0].run_key == ":".join(
            [second, *(file_sha256(period_file(landing, dataset, s, second))[:16] for s in dataset.sources)]
        )
        for period in (second, third):
            _materialize(instance, dataset, raw, period)
        result, cursor = _tick(instance, dataset, landing, cursor)
        assert not result.run_requests and "no new or changed" in result.skip_reason.skip_message

        lines = files[0].read_text().splitlines()
        files[0].write_text("\n".join(lines[:-1]) + "\n")  # a corrected file: one row fewer
        result, cursor = _tick(instance, dataset, landing, cursor)
        [corrected] = result.run_requests
        assert corrected.partition_key == first and corrected.run_key != keys[0]
        assert corrected.run_key.split(":")[1] == file_sha256(files[0])[:16]


def test_a_period_whose_files_failed_holds_back_the_periods_after_it(flights, data_dir, caplog):
    landing = data_dir / "landing"
    _keep_only(landing, flights, ["2013-01", "2013-02"])
    with dg.instance_for_test() as instance:
        _materialize(instance, flights, flights.reference)
        result, cursor = _tick(instance, flights, landing)
        first, second = result.run_requests
        _add_landing_run(instance, flights, first, dg.DagsterRunStatus.FAILURE)
        _add_landing_run(instance, flights, second, dg.DagsterRunStatus.FAILURE)  # held back behind it
        result, cursor = _tick(instance, flights, landing, cursor, log=caplog.handler)
        assert not result.run_requests  # the same bytes again: neither period is asked for
        assert "2013-01 failed to load these files: later periods wait until they change" in caplog.text

        # The held-back run loaded nothing, and says why.
        held_back = _materialize_raw(instance, flights, "2013-02", second)
        assert not held_back.success
        failures = [event for event in held_back.all_events if event.is_step_failure]
        assert len(failures) == len(flights.sources)
        message = f"held back: the landing run of 2013-01 before it is failure (run key {first.run_key})"
        assert all(event.step_failure_data.user_failure_data.description == message for event in failures)
        assert "2013-02" not in instance.get_materialized_partitions(asset_key(flights, "raw_flights"))

        # Corrected files of the first period: it runs, and the period held back behind it runs again.
        path = period_file(landing, flights, "flights", "2013-01")
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
        result, cursor = _tick(instance, flights, landing, cursor)
        assert [request.partition_key for request in result.run_requests] == ["2013-01", "2013-02"]
        assert result.run_requests[1].run_key != second.run_key
        _add_landing_run(instance, flights, result.run_requests[0], dg.DagsterRunStatus.SUCCESS)
        assert _materialize_raw(instance, flights, "2013-02", result.run_requests[1]).success


def _add_landing_run(instance, dataset: Dataset, request: dg.RunRequest, status: dg.DagsterRunStatus) -> None:
    """A landing sensor's run of ``request``, as the daemon records it (its run key and sensor in its tags)."""
    tags = {
        **request.tags,
        "dagster/run_key": request.run_key,
        "dagster/sensor_name": f"{dataset.name}_landing_sensor",
        "dagster/partition": request.partition_key,
    }
    instance.add_run(dg.DagsterRun(job_name=request.job_name, status=status, tags=tags))


def _materialize_raw(instance, dataset: Dataset, period: str, request: dg.RunRequest):
    """The raw tables of ``period`` loaded by a run carrying ``request``'s tags, as the landing sensor's run does."""
    return dg.materialize(
        list(_definitions(dataset.name).assets),
        selection=[asset_key(dataset, raw_table(source)) for source in dataset.sources],
        instance=instance,
        resources=resources_for("local"),
        partition_key=period,
        tags={**request.tags, "dagster/sensor_name": f"{dataset.name}_landing_sensor"},
        raise_on_error=False,
    )


def _queue_limit(key: str) -> dict:
    """The shipped dagster.yaml's run queue limit on tag ``key``."""
    limits = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    [limit] = [limit for limit in limits if limit["key"] == key]
    return limit


def test_a_period_after_the_seeded_year_is_taken_in_and_misnamed_files_are_not(flights, data_dir, caplog):
    landing = data_dir / "landing"
    january = land_a_year_later(landing)
    _keep_only(landing, flights, ["2013-12", january])
    folder = landing / "flights" / "flights"
    december = (folder / "2013-12.csv").read_text()
    for name in ("2012-12.csv", "2099-01.csv", "notes.csv"):
        (folder / name).write_text(december)
    names = job_names(flights)
    with dg.instance_for_test() as instance:
        _materialize(instance, flights, flights.reference)
        _materialize(instance, flights, ["raw_flights", "raw_weather"], "2013-12")  # 2013 is loaded
        result, cursor = _tick(instance, flights, landing, log=caplog.handler)
        assert _requested(result) == [(names.periods, january)]
        for name, reason in (
            ("2012-12.csv", "before the dataset's first period 2013-01"),
            ("2099-01.csv", "a period in the future"),
            ("notes.csv", "expected a monthly period like 2013-01, got 'notes'"),
        ):
            assert f"not taken in: {folder / name}: {reason}" in caplog.text

        # The new year's partition exists and loads like any other; then nothing is left to request.
        loaded = _materialize(instance, flights, ["raw_flights", "raw_weather"], january)
        rows = loaded.asset_materializations_for_node("flights__raw_flights")[0].metadata["dagster/row_count"].value
        assert rows == len((folder / f"{january}.csv").read_text().splitlines()) - 1 == 27_004
        result, _ = _tick(instance, flights, landing, cursor)
        assert not result.run_requests


def test_landing_sensor_waits_for_the_reference_files(flights, tmp_path):
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, flights, tmp_path)
    assert not result.run_requests and "no reference files" in result.skip_reason.skip_message


RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _first_training_tick(instance, dataset: Dataset, landing: Path, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    result = _sensor(dataset, "first_training_sensor")(context)
    return list(result.run_requests or []), result


def _loaded(instance, dataset: Dataset, landing: Path, periods: list[str], featured: list[str]) -> None:
    """What the landing runs record: each reference and period file's hash, loaded; features for ``featured``."""
    for table in dataset.reference:
        path = reference_file(landing, dataset, table)
        event = dg.AssetMaterialization(asset_key(dataset, table), metadata={SOURCE_HASH: file_sha256(path)})
        instance.report_runless_asset_event(event)
    for period in periods:
        for source in dataset.sources:
            sha = file_sha256(period_file(landing, dataset, source, period))
            key = asset_key(dataset, raw_table(source))
            instance.report_runless_asset_event(
                dg.AssetMaterialization(key, partition=period, metadata={SOURCE_HASH: sha})
            )
    for period in featured:
        event = dg.AssetMaterialization(asset_key(dataset, FEATURES_TABLE), partition=period)
        instance.report_runless_asset_event(event)


def test_a_dataset_without_a_champion_trains_its_first_model_once_its_landing_files_are_loaded(flights, data_dir):
    landing = data_dir / "landing"
    periods = ["2013-01", "2013-02", "2013-03"]
    _keep_only(landing, flights, periods)
    with dg.instance_for_test() as instance:
        requests, result = _first_training_tick(instance, flights, landing)
        assert (
            requests == [] and "waiting for landing files to load: reference tables" in result.skip_reason.skip_message
        )

        _loaded(instance, flights, landing, periods, featured=["2013-03"])
        requests, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert requests == [] and "features for a period and the period before it" in result.skip_reason.skip_message

        # A landing run in progress may still bring a newer period: wait for it.
        busy = {DATASET_TAG: "flights", JOB_TAG: "period_pipeline"}
        running = dg.DagsterRun(job_name="flights_period_pipeline", status=dg.DagsterRunStatus.STARTED, tags=busy)
        instance.add_run(running)
        _loaded(instance, flights, landing, [], featured=["2013-01", "2013-02"])
        requests, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert requests == [] and "in progress" in result.skip_reason.skip_message
        instance.delete_run(running.run_id)

        # The newest period with features held out, trained on the periods with features before it.
        [training], result = _first_training_tick(instance, flights, landing, result.cursor)
        assert training.job_name == "flights_training" and training.run_key == "first_training:2013-03"
        config = training.run_config["ops"]["flights__training_set"]["config"]
        assert config == {"target_period": "2013-03", "window_periods": 2}
        assert training.tags[TRIGGER_TAG] == "first_training" and training.tags["dagster/priority"] == "1"

        # A period landed and not yet asked for: its features may make a newer target.
        later = land_a_year_later(landing, "2013-03")
        requests, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert requests == [] and f"waiting for landing files to load: {later}" in result.skip_reason.skip_message
        period_file(landing, flights, "flights", later).unlink()

        # Once a champion exists, its waiting periods are scored and monitored: one run per range of consecutive ones.
        champion = {"champion_version": "v1", "target_period": "2013-03"}
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key(flights, CHAMPION), metadata=champion))
        _loaded(instance, flights, landing, [], featured=["2013-05"])
        scoring, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert [(r.job_name, r.run_key, r.partition_key) for r in scoring] == [
            ("flights_scoring", "catch_up:v1:2013-01..2013-03", None),
            ("flights_scoring", "catch_up:v1:2013-05..2013-05", None),
        ]
        assert [(r.tags[RANGE_START], r.tags[RANGE_END], r.tags[TRIGGER_TAG]) for r in scoring] == [
            ("2013-01", "2013-03", "catch_up"),
            ("2013-05", "2013-05", "catch_up"),
        ]
        assert all(r.tags["dagster/priority"] == "1" for r in scoring)  # ahead of other datasets' landing runs

        # Not when declarative automation has asked for them already (a backfill), nor once a period is scored:
        # the drift sensor and people retrain, and automation follows new periods, from then on.
        backfill = _predictions_backfill(instance, flights, ["2013-01", "2013-02", "2013-03", "2013-05"])
        requests, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert requests == [] and "asked for the first champion's periods" in result.skip_reason.skip_message
        instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
        event = dg.AssetMaterialization(asset_key(flights, PREDICTIONS_TABLE), partition="2013-01")
        instance.report_runless_asset_event(event)
        requests, result = _first_training_tick(instance, flights, landing, result.cursor)
        assert requests == [] and "flights_delay has a champion and scored periods" in result.skip_reason.skip_message


def _predictions_backfill(instance, dataset: Dataset, periods: list[str]) -> PartitionBackfill:
    """A backfill of the dataset's predictions, as declarative automation requests one, recorded as requested."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="automation",
        asset_graph=dg.Definitions(
            assets=list(_definitions(dataset.name).assets), resources=resources_for("local")
        ).resolve_asset_graph(),
        partition_names=periods,
        asset_selection=[asset_key(dataset, PREDICTIONS_TABLE)],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill


def test_every_dataset_trains_its_own_first_model(dataset, tmp_path):
    first, second = seed_periods(dataset)[:2]
    with dg.instance_for_test() as instance:
        for period in (first, second):
            event = dg.AssetMaterialization(asset_key(dataset, FEATURES_TABLE), partition=period)
            instance.report_runless_asset_event(event)
        [training], _ = _first_training_tick(instance, dataset, tmp_path)  # an empty landing zone: nothing waits
    assert training.job_name == f"{dataset.name}_training" and training.run_key == f"first_training:{second}"
    config = training.run_config["ops"][f"{dataset.name}__training_set"]["config"]
    assert config == {"target_period": second, "window_periods": 1}


def _monitored(
    instance, dataset, period, champion="v1", drift=False, auc_drop=0.0, degraded=False, labelled=True, at_risk=None
):
    drifted = dataset.feature_columns[:3] if drift else []
    feature_drift = {
        "dataset_drift": drift,
        "drifted_share": 0.6 if drift else 0.1,
        "drifted_features": dg.MetadataValue.json(drifted),
        "champion_version": champion,
        "champion_target_period": seed_periods(dataset)[1],
        **({"auc_at_risk": at_risk} if at_risk is not None else {}),
    }
    performance = {"champion_version": champion}
    performance |= {"auc_drop": auc_drop, "degraded": degraded} if labelled else {"labels": "not yet"}
    for name, metadata in ((FEATURE_DRIFT, feature_drift), (PERFORMANCE, performance)):
        event = dg.AssetMaterialization(asset_key(dataset, name), partition=period, metadata=metadata)
        instance.report_runless_asset_event(event)


def _retrain_tick(instance, dataset, cursor=None):
    result = _sensor(dataset, "drift_retrain_sensor")(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result.run_requests, result.cursor


def test_drift_requests_one_retrain_per_episode_with_why_in_the_tags(flights):
    with dg.instance_for_test() as instance:
        _monitored(instance, flights, "2013-02", drift=True)  # the champion's own held-out period: nothing to learn
        _monitored(instance, flights, "2013-03")
        requests, cursor = _retrain_tick(instance, flights)
        assert requests == []

        _monitored(instance, flights, "2013-04", drift=True)
        [retrain], cursor = _retrain_tick(instance, flights, cursor)
        assert retrain.job_name == "flights_training" and retrain.run_key == "retrain:2013-04:v1"
        config = retrain.run_config["ops"]["flights__training_set"]["config"]
        assert config == {"target_period": "2013-04", "window_periods": 1}  # no features yet: the least window
        assert retrain.tags[TRIGGER_TAG] == "drift" and retrain.tags[DRIFTED_FEATURES_TAG] == "carrier,origin,dest"
        assert "dataset drift (60% of features" in retrain.tags[DRIFT_REASON_TAG]

        assert _retrain_tick(instance, flights, cursor)[0] == []  # nothing new: nothing requested again
        _monitored(instance, flights, "2013-05", drift=True)  # the same episode, within the cooldown
        requests, cursor = _retrain_tick(instance, flights, cursor)
        assert requests == []
        _monitored(instance, flights, "2013-06", champion="v2", auc_drop=0.08, degraded=True)  # past the cooldown
        [retrain], cursor = _retrain_tick(instance, flights, cursor)
        assert retrain.run_key == "retrain:2013-06:v2" and "ROC AUC 0.080 below" in retrain.tags[DRIFT_REASON_TAG]


def test_the_risk_policy_retrains_on_auc_at_risk_or_lost_not_on_the_share_of_drifted_features(flights):
    monitoring = MonitoringSection(retrain_policy="risk", retrain_cost=0.01, cooldown_periods=0)
    risky = replace(flights, declaration=flights.declaration.model_copy(update={"monitoring": monitoring}))
    sensor = drift_retrain_sensor(risky, dataset_jobs(risky))
    assert "retrain_cost (0.01)" in sensor.description

    def tick(instance, cursor=None):
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        return list(result.run_requests or []), result.cursor

    with dg.instance_for_test() as instance:
        # 60% of the features drifted, but in features the champion barely uses: the old policy's retrain.
        _monitored(instance, flights, "2013-04", drift=True, at_risk=0.004)
        requests, cursor = tick(instance)
        assert requests == []
        # Few features drifted, but the one it relies on: the drift puts 0.03 AUC at risk.
        _monitored(instance, flights, "2013-05", at_risk=0.03)
        [retrain], cursor = tick(instance, cursor)
        assert retrain.tags[DRIFT_PERIOD_TAG] == "2013-05" and retrain.tags[AUC_AT_RISK_TAG] == "0.0300"
        assert retrain.tags[DRIFT_REASON_TAG] == "drift puts 0.030 ROC AUC at risk (cost 0.010)"
        # No drift to speak of, but once labels arrived the champion had lost 0.02 AUC.
        _monitored(instance, flights, "2013-06", champion="v2", at_risk=0.001, auc_drop=0.02)
        [retrain], cursor = tick(instance, cursor)
        assert "ROC AUC 0.020 below the champion's held-out AUC" in retrain.tags[DRIFT_REASON_TAG]
        assert (retrain.tags[AUC_DROP_TAG], retrain.tags[AUC_AT_RISK_TAG]) == ("0.0200", "0.0010")
        # A champion trained before importance was measured has no risk figure: only realised AUC counts.
        _monitored(instance, flights, "2013-07", champion="v3", drift=True, auc_drop=0.005)
        assert tick(instance, cursor)[0] == []


def test_the_retrain_window_is_the_periods_with_features_before_the_drift(flights):
    with dg.instance_for_test() as instance:
        for period in ("2013-01", "2013-03", "2013-04"):  # 2013-02 is missing: the window stops there
            event = dg.AssetMaterialization(asset_key(flights, FEATURES_TABLE), partition=period)
            instance.report_runless_asset_event(event)
        _monitored(instance, flights, "2013-05", drift=True)
        [retrain], _ = _retrain_tick(instance, flights)
    config = retrain.run_config["ops"]["flights__training_set"]["config"]
    assert config == {"target_period": "2013-05", "window_periods": 2}


def test_every_dataset_retrains_its_own_model_on_drift(dataset):
    later = seed_periods(dataset)[2]  # after the champion's held-out period
    with dg.instance_for_test() as instance:
        _monitored(instance, dataset, later, drift=True)
        [retrain], _ = _retrain_tick(instance, dataset)
    assert retrain.job_name == f"{dataset.name}_training" and retrain.tags[DRIFT_PERIOD_TAG] == later
    assert retrain.run_config["ops"][f"{dataset.name}__training_set"]["config"]["target_period"] == later


def test_several_drifted_periods_in_one_tick_give_one_retrain_on_the_newest(flights):
    with dg.instance_for_test() as instance:
        for period in ("2013-04", "2013-05", "2013-06", "2013-07"):
            _monitored(instance, flights, period, drift=True)
        [retrain], cursor = _retrain_tick(instance, flights)
    assert retrain.tags[DRIFT_PERIOD_TAG] == "2013-07" and json.loads(cursor)["last_retrain"] == "2013-07"


def test_a_period_waits_until_both_monitors_saw_the_same_champion(flights):
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key(flights, FEATURE_DRIFT),
                partition="2013-04",
                metadata={
                    "dataset_drift": True,
                    "drifted_share": 0.7,
                    "drifted_features": ["temp"],
                    "champion_version": "v1",
                    "champion_target_period": "2013-02",
                },
            )
        )
        requests, cursor = _retrain_tick(instance, flights)
        assert requests == [] and json.loads(cursor)["pending"] == ["2013-04"]
        _monitored(instance, flights, "2013-04", drift=True, labelled=False)
        [retrain], cursor = _retrain_tick(instance, flights, cursor)
        assert retrain.tags[DRIFT_PERIOD_TAG] == "2013-04" and json.loads(cursor)["pending"] == []


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


def test_a_failed_run_is_logged_and_posted_to_the_webhook(flights, data_dir, webhook, caplog):
    url, received = webhook
    shutil.rmtree(data_dir / "landing" / "flights" / "flights")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(_definitions("flights").assets),
            selection=[asset_key(flights, "raw_flights")],
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
    assert alert["failed_steps"] == ["flights__raw_flights"]
    assert "flights__raw_flights" in alert["error"]
    assert "run failed" in caplog.text and "alert webhook failed" in caplog.text
