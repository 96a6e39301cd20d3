"""Scale-out on the production topology: a backfill of every flights month of 2013 and every employment year,
on one Celery worker and on two, beside the same periods on the embedded default (one process, a DuckDB file).

Each topology is the one tests/production/test_topology.py starts (PostgreSQL instance, code server, daemon,
webserver, Celery workers on Redis, DuckLake on PostgreSQL + moto's S3, DVC's remote on S3): reference files land
and the landing sensors load them, the sensors are stopped, every period lands, and one backfill per dataset is
launched through the webserver's GraphQL. Measured: wall time from launch to both backfills done, runs, each
step's time on the workers, conflicts retried, lock errors, rows landed vs stored, and the DVC md5 of every clean
and features partition against the embedded default's.

    .venv/bin/python benchmarks/scale_out.py [--write-docs] [--months 2013-01..2013-12] [--workers 1,2]
        [--keep FOLDER]   (keep every process's log there)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the topology harness the production tests use

from docs_section import write_section  # noqa: E402
from production.servers import AWS_ENV, postgres_server, redis_server, s3_server  # noqa: E402
from production.topology import (  # noqa: E402
    embedded_md5s,
    git_repository,
    lake_of,
    land,
    landed_rows,
    period_keys,
    running_topology,
    wait_until,
)

from mlplatform.data.lake import connect_lake  # noqa: E402
from mlplatform.data.landing import seed  # noqa: E402
from mlplatform.datasets import Dataset, get_dataset  # noqa: E402
from mlplatform.datasets.dataset import raw_table  # noqa: E402
from mlplatform.orchestration.assets.common import asset_key  # noqa: E402

SECTION = "Scale-out on the production topology"
DATASETS = ("flights", "employment")
# What DuckDB (an embedded file), DVC and SQLite say when a writer finds the lock taken.
LOCK_ERRORS = ("Could not set lock", "Unable to acquire lock", "database is locked")
VERSIONED = ("clean_flights", "clean_weather", "clean_people", "features")


def periods_of(dataset: Dataset, months: str) -> list[str]:
    return dataset.periods.parse_spec(months) if dataset.name == "flights" else dataset.seed_periods


def production_run(root: Path, seeded: Path, plan: dict[str, list[str]], workers: int, servers) -> dict:
    postgres, redis, s3 = servers
    names = tuple(f"worker-{n}" for n in range(1, workers + 1))
    with running_topology(root, postgres, redis, s3, visibility_timeout=7200, workers=names) as topology:
        landing = Path(topology.env["MLPLATFORM_LANDING_DIR"])
        for name in plan:
            land(seeded, landing, get_dataset(name), [])
        references = [asset_key(get_dataset("flights"), table) for table in get_dataset("flights").reference]
        wait_until(lambda: all(topology.latest(key) for key in references), 600, "the reference runs", 3)
        for name in plan:
            topology.stop_sensor(f"{name}_landing_sensor")
        wait_until(lambda: all(r["status"] == "SUCCESS" for r in topology.runs()), 300, "the sensors' runs", 2)
        for name, periods in plan.items():
            land(seeded, landing, get_dataset(name), periods, reference=False)
        started = time.monotonic()
        backfills = [
            topology.launch_backfill(period_keys(get_dataset(name)), periods[0], periods[-1])
            for name, periods in plan.items()
        ]

        def all_done() -> list[str] | None:
            statuses = [topology.backfill_status(backfill) for backfill in backfills]
            return statuses if "REQUESTED" not in statuses else None

        statuses = wait_until(all_done, 3600, "the backfills", 2)
        seconds = time.monotonic() - started
        backfill_runs = [r for r in topology.runs() if any(t["key"] == "dagster/backfill" for t in r["tags"])]
        steps = {worker: topology.step_seconds(worker) for worker in names}
        logs = "".join(process.log.read_text(errors="replace") for process in topology.processes.values())
        rows = {"landed": 0, "stored": 0, "distinct": 0}
        md5s = {}
        with connect_lake(lake_of(topology.env)) as con:
            for name, periods in plan.items():
                dataset = get_dataset(name)
                for source in dataset.sources:
                    table = dataset.table(raw_table(source))
                    for period in periods:
                        rows["landed"] += landed_rows(landing, dataset, source, period)
                        rows["stored"] += con.execute(
                            f"SELECT count(*) FROM {table} WHERE period = ?", [period]
                        ).fetchone()[0]
                for asset in VERSIONED:
                    key = asset_key(dataset, asset)
                    if key in period_keys(dataset):
                        for period, found in topology.latest(key, periods).items():
                            md5s[(name, asset, period)] = found["metadata"]["dvc/md5"]
    return {
        "workers": workers,
        "seconds": seconds,
        "statuses": statuses,
        "runs": len(backfill_runs),
        "run_seconds": [r["endTime"] - r["startTime"] for r in backfill_runs if r["endTime"] and r["startTime"]],
        "failed_runs": sum(r["status"] != "SUCCESS" for r in backfill_runs),
        "steps": steps,
        "conflicts_retried": logs.count("warehouse_conflict_retry"),
        "lock_errors": sum(
            logs.count(text) for text in ("Could not set lock", "Unable to acquire lock", "database is locked")
        ),
        "rows": rows,
        "md5s": md5s,
    }


def embedded_run(root: Path, seeded: Path, plan: dict[str, list[str]]) -> tuple[float, dict]:
    """The same periods materialized in one process on the embedded default, one period after another."""
    started = time.monotonic()
    md5s = embedded_md5s(git_repository(root / "project"), seeded, plan)
    return time.monotonic() - started, md5s


def report(results: list[dict], embedded_seconds: float, embedded_md5s: dict, plan: dict[str, list[str]]) -> str:
    partitions = sum(len(periods) for periods in plan.values())
    lines = [
        f"## {SECTION}",
        "",
        f"`benchmarks/scale_out.py`, {dt.date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores "
        f"({platform.python_version()}), machine shared with other jobs. Backfill of {partitions} partitions "
        f"({', '.join(f'{name}: {periods[0]}..{periods[-1]}' for name, periods in plan.items())}), period pipeline "
        "only (raw, clean, quarantine, features; every clean and features partition versioned in DVC on S3).",
        "",
        "| topology | wall time | runs (median length) | steps (per worker) | median step | workers busy "
        "| conflicts retried | lock errors | rows landed / stored | DVC md5 equal to embedded |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| embedded default, 1 process | {embedded_seconds:.0f} s | {partitions} (`dg.materialize`) | | | | | | | |",
    ]
    for result in results:
        steps = [s for worker in result["steps"].values() for s in worker]
        per_worker = " + ".join(str(len(s)) for s in result["steps"].values())
        equal = sum(result["md5s"].get(key) == md5 for key, md5 in embedded_md5s.items())
        busy = sum(steps) / (result["seconds"] * result["workers"])
        lines.append(
            f"| production, {result['workers']} Celery worker(s) | {result['seconds']:.0f} s | {result['runs']} "
            f"({result['failed_runs']} failed; {statistics.median(result['run_seconds']):.0f} s) | {len(steps)} "
            f"({per_worker}) | {statistics.median(steps):.1f} s | {busy:.0%} ({sum(steps):.0f} s) "
            f"| {result['conflicts_retried']} | {result['lock_errors']} | {result['rows']['landed']:,} / "
            f"{result['rows']['stored']:,} | {equal} of {len(embedded_md5s)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", default="2013-01..2013-12")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs of every process)")
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    plan = {name: periods_of(get_dataset(name), args.months) for name in DATASETS}
    with tempfile.TemporaryDirectory(prefix="mlplatform-scale-") as temp:
        root = args.keep or Path(temp)
        seeded = root / "seeded"
        for name, periods in plan.items():
            seed(seeded, get_dataset(name), periods)
        (root / "redis").mkdir()
        (root / "s3").mkdir()
        with postgres_server() as postgres, redis_server(root / "redis") as redis, s3_server(root / "s3") as s3:
            results = []
            for workers in (int(n) for n in args.workers.split(",")):
                results.append(
                    production_run(root / f"workers_{workers}", seeded, plan, workers, (postgres, redis, s3))
                )
                print(results[-1]["workers"], "workers:", round(results[-1]["seconds"]), "s", flush=True)
        embedded_seconds, embedded_md5s = embedded_run(root / "embedded", seeded, plan)
    text = report(results, embedded_seconds, embedded_md5s, plan)
    print(text)
    if args.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
