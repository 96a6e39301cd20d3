"""Time to value: `make run` from an empty data folder until every dataset's periods are scored and monitored.

What `make run` does after install, in a fresh temp data folder and Dagster home (the shipped dagster.yaml):
`mlplatform init`, `mlplatform seed`, then `dagster dev` with no one at the Launchpad. The clock starts before
`init` and stops when every dataset is populated:

- every period seeded into its landing zone has features,
- a champion exists (the champion_model asset recorded one), and
- every one of those periods has predictions and its three monitoring assets (feature_drift, prediction_drift,
  model_performance) materialized.

It polls the Dagster instance (never the warehouse, which runs write), prints each milestone as it is reached and,
at the end, the wall time of each kind of run. `dagster dev` and everything it started are stopped at the end.

    .venv/bin/python benchmarks/time_to_value.py [--deadline 900] [--keep DIR] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' way of starting and stopping `dagster dev`

import dagster as dg  # noqa: E402
from dagster_dev import dagster_dev  # noqa: E402
from docs_section import revision, write_section  # noqa: E402

from mlplatform.catalog import latest_metadata  # noqa: E402
from mlplatform.datasets import Dataset, all_datasets  # noqa: E402
from mlplatform.datasets.dataset import FEATURES_TABLE, PREDICTIONS_TABLE  # noqa: E402
from mlplatform.orchestration.assets.common import asset_key  # noqa: E402
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE, PREDICTION_DRIFT  # noqa: E402
from mlplatform.orchestration.assets.serving import CHAMPION  # noqa: E402
from mlplatform.orchestration.jobs import DATASET_TAG, JOB_TAG  # noqa: E402

SECTION = "Time to value"
SCORED = (PREDICTIONS_TABLE, FEATURE_DRIFT, PREDICTION_DRIFT, PERFORMANCE)
POLL_SECONDS = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it, logs included")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the '{SECTION}' section")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="time_to_value-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return measure(work, args.deadline, args.write_docs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, deadline: float, write_docs: bool) -> int:
    home, data = work / "dagster_home", work / "data"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLPLATFORM_DATA_DIR": str(data)}
    env.pop("MLPLATFORM_EXECUTOR", None)  # `make run`'s executor
    datasets = list(all_datasets().values())
    milestones = Milestones()
    mlplatform = str(Path(sys.executable).with_name("mlplatform"))
    for command in ("init", "seed"):
        subprocess.run([mlplatform, command], cwd=ROOT, env=env, check=True, capture_output=True)
        milestones.reach(f"mlplatform {command} done")
    landed = {dataset.name: dataset.seed_periods for dataset in datasets}
    with dagster_dev(home, {"MLPLATFORM_DATA_DIR": str(data)}):
        milestones.reach("dagster dev serving")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            done, loads = set(), []
            while len(done) < len(datasets) and milestones.elapsed() < deadline:
                for dataset in datasets:
                    if dataset.name not in done and populated(instance, dataset, landed[dataset.name], milestones):
                        done.add(dataset.name)
                        milestones.reach(f"{dataset.name}: every period scored and monitored")
                loads.append(os.getloadavg()[0])
                time.sleep(POLL_SECONDS)
            runs = run_times(instance)
            failed = failed_runs(instance)
    total = milestones.elapsed()
    reached = len(done) == len(datasets)
    load = statistics.mean(loads)
    print(f"\ntime to value: {total:.0f} s" if reached else f"\nnot populated within {deadline:.0f} s")
    print(f"1-minute load average while dagster dev ran: mean {load:.1f} on {os.cpu_count()} cores")
    for line in [*runs, *failed]:
        print(line)
    if write_docs and reached:
        write_section(SECTION, docs_text(total, load, milestones, runs, datasets))
    return 0 if reached else 1


class Milestones:
    def __init__(self):
        self.start = time.monotonic()
        self.reached: list[tuple[float, str]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def reach(self, what: str) -> None:
        if what not in {name for _, name in self.reached}:
            self.reached.append((self.elapsed(), what))
            print(f"{self.elapsed():6.0f} s  {what}", flush=True)


def populated(instance: dg.DagsterInstance, dataset: Dataset, periods: list[str], milestones: Milestones) -> bool:
    """Whether every landed period of ``dataset`` has features and, under a champion, predictions and monitoring."""
    has = lambda name: set(instance.get_materialized_partitions(asset_key(dataset, name)))  # noqa: E731
    if not set(periods) <= has(FEATURES_TABLE):
        return False
    milestones.reach(f"{dataset.name}: every period has features")
    champion = latest_metadata(instance, asset_key(dataset, CHAMPION))
    if not champion or champion.get("champion_version", "none") == "none":
        return False
    milestones.reach(f"{dataset.name}: champion {champion['champion_version']} (target {champion['target_period']})")
    return all(set(periods) <= has(name) for name in SCORED)


def run_times(instance: dg.DagsterInstance) -> list[str]:
    """Wall seconds of each kind of run (per dataset): count, median, total."""
    seconds = defaultdict(list)
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])):
        run = record.dagster_run
        # Declarative automation's runs (predictions, rollout, monitoring of a period) name no job of ours.
        kind = run.tags.get(JOB_TAG, "scoring and monitoring (automation)")
        dataset = run.tags.get(DATASET_TAG) or next(iter(run.asset_selection or []), dg.AssetKey("-")).path[0]
        if record.start_time and record.end_time:
            seconds[(dataset, kind)].append(record.end_time - record.start_time)
    return [
        f"{dataset} {kind}: {len(times)} runs, median {statistics.median(times):.1f} s, total {sum(times):.0f} s"
        for (dataset, kind), times in sorted(seconds.items())
    ]


def failed_runs(instance: dg.DagsterInstance) -> list[str]:
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    return [f"FAILED: {r.dagster_run.job_name} {r.dagster_run.tags.get('dagster/partition', '')}" for r in records]


def docs_text(total: float, load: float, milestones: Milestones, runs: list[str], datasets: list[Dataset]) -> str:
    periods = ", ".join(f"{dataset.name} {len(dataset.seed_periods)}" for dataset in datasets)
    lines = [
        f"## {SECTION}",
        "",
        f"`benchmarks/time_to_value.py`, {dt.date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores "
        f"(Python {platform.python_version()}), code at {revision() or 'an unknown revision'}. What `make run` does "
        f"after install, from an empty data folder: `mlplatform init`, `mlplatform seed`, `dagster dev`, and no one "
        f"at the Launchpad. Done when every seeded period ({periods}) has features, predictions, feature_drift, "
        "prediction_drift and model_performance under a champion.",
        "",
        f"**Time to value: {total:.0f} s**, at a mean 1-minute load average of {load:.1f} while `dagster dev` ran.",
        "",
        "| seconds | milestone |",
        "|---:|---|",
        *(f"| {seconds:.0f} | {what} |" for seconds, what in milestones.reached),
        "",
        "Runs (wall seconds from start to end, successful runs):",
        "",
        *(f"- {line}" for line in runs),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
