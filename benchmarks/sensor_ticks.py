"""How much a sensor tick costs: the flights dataset's ``drift_retrain_sensor`` and ``landing_sensor`` against a
real instance.

Both are meant to do no heavy work: the retrain sensor reads materialization metadata (never data), the
landing sensor hashes a file only when its size or modification time changed. Measured on an instance
holding a year of monitoring materializations and a landing zone of a year of real files.

    .venv/bin/python benchmarks/sensor_ticks.py [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from docs_section import write_section

from mlplatform.data.landing import file_sha256, period_file, reference_file, scan, seed
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.ingestion import SOURCE_HASH
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE
from mlplatform.orchestration.jobs import dataset_jobs
from mlplatform.orchestration.resources.landing import LandingZone
from mlplatform.orchestration.sensors.landing import landing_sensor
from mlplatform.orchestration.sensors.retraining import drift_retrain_sensor

SECTION = "Sensor ticks"
FLIGHTS = get_dataset("flights")
MONTHS = FLIGHTS.periods.parse_spec("2013-01..2013-12")
REPEATS = 20


def record_a_monitored_year(instance: dg.DagsterInstance) -> None:
    """What flights/feature_drift and flights/model_performance record for twelve months (drift from May on)."""
    for number, month in enumerate(MONTHS, start=1):
        drifted = number >= 5
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key(FLIGHTS, FEATURE_DRIFT),
                partition=month,
                metadata={
                    "dataset_drift": drifted,
                    "drifted_share": 0.6 if drifted else 0.2,
                    "drifted_features": dg.MetadataValue.json(["temp", "dewp"] if drifted else []),
                    "champion_version": "v1",
                    "champion_target_period": "2013-03",
                },
            )
        )
        metadata = {"champion_version": "v1", "champion_target_period": "2013-03", "auc_drop": 0.01, "degraded": False}
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key(FLIGHTS, PERFORMANCE), partition=month, metadata=metadata)
        )


def record_a_loaded_year(instance: dg.DagsterInstance, landing: Path) -> None:
    """flights/raw_* and reference materializations carrying the landing files' hashes, as after a loaded year."""
    for table in FLIGHTS.reference:
        metadata = {SOURCE_HASH: file_sha256(reference_file(landing, FLIGHTS, table))}
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key(FLIGHTS, table), metadata=metadata))
    for month in scan(landing, FLIGHTS).periods:
        for source in FLIGHTS.sources:
            metadata = {SOURCE_HASH: file_sha256(period_file(landing, FLIGHTS, source, month))}
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key(FLIGHTS, raw_table(source)), partition=month, metadata=metadata)
            )


def timed(tick: Callable[[], object]) -> float:
    """The median of ``REPEATS`` ticks, in milliseconds."""
    durations = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        tick()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations)


def measure(folder: Path) -> tuple[dict[str, float], str]:
    landing = folder / "landing"
    seed(landing, FLIGHTS, MONTHS)
    files = [path for path in landing.rglob("*") if path.is_file()]
    size = f"{len(files)} files, {sum(path.stat().st_size for path in files) / 1e6:.0f} MB"
    with dg.DagsterInstance.ephemeral() as instance:
        record_a_monitored_year(instance)
        record_a_loaded_year(instance, landing)
        resources = {"landing": LandingZone(path=str(landing))}
        jobs = dataset_jobs(FLIGHTS)
        landing_sensor_def, retrain_sensor_def = landing_sensor(FLIGHTS, jobs), drift_retrain_sensor(FLIGHTS, jobs)

        def landing_tick(cursor: str | None) -> dg.SensorResult:
            return landing_sensor_def(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

        def retrain_tick(cursor: str | None) -> dg.SensorResult:
            return retrain_sensor_def(dg.build_sensor_context(instance=instance, cursor=cursor))

        warm_landing = landing_tick(None).cursor
        settled = retrain_tick(None).cursor
        return {
            "flights_landing_sensor, first tick (hashes every file)": timed(lambda: landing_tick(None)),
            "flights_landing_sensor, steady tick (nothing changed)": timed(lambda: landing_tick(warm_landing)),
            "flights_drift_retrain_sensor, first tick (a year of monitoring to decide)": timed(
                lambda: retrain_tick(None)
            ),
            "flights_drift_retrain_sensor, steady tick (nothing new)": timed(lambda: retrain_tick(settled)),
        }, size


def section(results: dict[str, float], landing_size: str) -> str:
    rows = "\n".join(f"| {name} | {milliseconds:.1f} |" for name, milliseconds in results.items())
    return f"""## {SECTION}

A tick must stay cheap: Dagster runs sensors every 30 to 60 seconds in the daemon. Median of {REPEATS} ticks of
the flights dataset's sensors against an ephemeral instance holding a year of `flights/feature_drift` and
`flights/model_performance` materializations and of `flights/raw_*` materializations, with the real 2013
landing zone ({landing_size}). Measured {dt.date.today()} on
{platform.machine()}, Python {platform.python_version()}, shared 2-core machine.

Command: `.venv/bin/python benchmarks/sensor_ticks.py --write-docs`

| tick | milliseconds |
|---|---:|
{rows}

`flights_drift_retrain_sensor` reads metadata only, so its cost is event-log reads, independent of the data's size.
`flights_landing_sensor` hashes files only on its first tick (or when a file's size or modification time changes);
afterwards a tick is a `stat` per file and one event-log read per landed file.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-docs", action="store_true", help="write the results into docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results, landing_size = measure(Path(folder))
    text = section(results, landing_size)
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
        print("wrote docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
