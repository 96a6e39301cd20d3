"""Column drift, reference against current: mlplatform.monitoring.drift beside Evidently 0.7.23's DataDriftPreset.

Setup (not timed): DuckDB SQL generates a reference and a current sample of 15 flight-like columns (9 numeric,
6 categorical; continuous, rounded, integer, binary and string values) and writes each as Parquet. Five columns
get planted drift (``DRIFTED``); the other ten come from the same distribution in both samples. The Parquet
files are loaded into a DuckDB file for mlplatform and into pandas for Evidently before either clock starts:
Parquet reading is timed on neither side.

Timed, each in a fresh subprocess so that its peak RSS (``VmHWM``) is its own:

* ``mlplatform``: :func:`mlplatform.monitoring.drift.profile` of the reference table (done once per model
  version, in training) and :func:`mlplatform.monitoring.drift.compare` of the current table against it (each
  monitoring run), timed separately, on a read-only connection to the DuckDB file with the platform's memory
  limit. The tables are stored DuckDB tables (compressed, columnar) read through DuckDB's buffer pool: each
  worker starts cold, so its first reads of the file are timed too. The worker runs ``--repeat`` times (fresh
  process each time) and the report gives the median run (by profile + compare) beside the others, as the
  machine is shared.
* ``Evidently``: ``Dataset.from_pandas`` of both frames with their column types, then
  ``Report([DataDriftPreset()]).run(current, reference)``, in the Python of its own environment
  (``--evidently-python``, built from requirements-evidently.lock: Evidently 0.7.23 does not import with the
  pandas 3 the project pins).

Both must flag the same columns. A second run times mlplatform alone at ``--large-rows`` (10M against 10M),
and the last figure is what a sensor tick costs: reading a saved report's JSON and deciding dataset drift.
The load averages before and after are reported, as other work may share the cores.

    .venv/bin/python benchmarks/drift_vs_evidently.py --evidently-python .evenv/bin/python
    .venv/bin/python benchmarks/drift_vs_evidently.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import duckdb
from docs_section import write_section

from mlplatform.data.sql import sql_string
from mlplatform.monitoring.drift import DriftReport, compare, profile
from mlplatform.orchestration.resources import DUCKDB_MEMORY_LIMIT

REPO = Path(__file__).resolve().parent.parent
SECTION = "Column drift against Evidently"
TARGET_SPEEDUP = 50
TARGET_LARGE_SECONDS = 10
TARGET_PEAK_MB = 2048

NORMAL = "(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))"
CARRIERS = "['9E', 'AA', 'AS', 'B6', 'DL', 'EV', 'F9', 'FL', 'HA', 'MQ', 'OO', 'UA', 'US', 'VX', 'WN', 'YV']"
# name -> (kind, reference SQL, current SQL when the column drifts)
COLUMNS: dict[str, tuple[str, str, str | None]] = {
    "temp": ("numeric", f"round(55 + 17 * {NORMAL}, 1)", f"round(59 + 17 * {NORMAL}, 1)"),
    "humid": ("numeric", "20 + 60 * random()", None),
    "wind_speed": ("numeric", "-8 * ln(1 - random())", "-10 * ln(1 - random())"),
    "pressure": ("numeric", f"1017 + 7 * {NORMAL}", None),
    "distance": ("numeric", "round(80 + 2500 * random() * random())", None),
    "plane_age": ("numeric", "floor(30 * random() * random())", None),
    "route_delay_rate": ("numeric", f"0.2 + 0.05 * {NORMAL}", f"0.21 + 0.05 * {NORMAL}"),
    "days_to_holiday": ("numeric", "floor(30 * random())", None),
    "is_weekend": ("numeric", "(random() < 0.28)::INT", "(random() < 0.5)::INT"),
    "carrier": (
        "categorical",
        f"{CARRIERS}[1 + floor(16 * pow(random(), 1.5))::INT]",
        f"{CARRIERS}[1 + floor(16 * pow(random(), 0.7))::INT]",
    ),
    "origin": ("categorical", "['EWR', 'JFK', 'LGA'][1 + floor(3 * random())::INT]", None),
    "dest": ("categorical", "'D' || floor(100 * pow(random(), 2))::INT", None),
    "sched_hour": ("categorical", "(5 + floor(19 * random()))::INT", None),
    "weekday": ("categorical", "(1 + floor(7 * random()))::INT", None),
    "season": ("categorical", "CASE WHEN random() < 0.4 THEN 'peak' ELSE 'off' END", None),
}
KINDS = {name: kind for name, (kind, _, _) in COLUMNS.items()}
DRIFTED = sorted(name for name, (_, _, drifted) in COLUMNS.items() if drifted)

EVIDENTLY_RUN = r"""
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

reference_path, current_path, kinds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
reference, current = pd.read_parquet(reference_path), pd.read_parquet(current_path)
definition = DataDefinition(
    numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
    categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
)
start = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition)
)
seconds = time.perf_counter() - start
p_values = {"K-S p_value": "<=", "chi-square p_value": "<", "Z-test p_value": "<"}
columns = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        value, threshold, method = float(metric["value"]), config["threshold"], config["method"]
        comparison = p_values.get(method, ">=")
        drifted = {"<=": value <= threshold, "<": value < threshold, ">=": value >= threshold}[comparison]
        columns[config["column"]] = {"method": method, "score": value, "drifted": drifted}
status = open("/proc/self/status").read().splitlines()
peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "columns": columns, "peak_rss_mb": peak}))
"""


def generate(workdir: Path, rows: int) -> dict[str, Path]:
    """Reference and current Parquet files and a DuckDB file holding both as tables (not timed)."""
    paths = {side: workdir / f"{side}-{rows}.parquet" for side in ("reference", "current")}
    database = workdir / f"drift-{rows}.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("SET enable_progress_bar = false")
        for side, path in paths.items():
            selects = ", ".join(
                f"{drifted if side == 'current' and drifted else reference} AS {name}"
                for name, (_, reference, drifted) in COLUMNS.items()
            )
            con.execute(f"COPY (SELECT {selects} FROM range({rows})) TO {sql_string(path)} (FORMAT parquet)")
            con.execute(f"CREATE OR REPLACE TABLE {side} AS FROM read_parquet({sql_string(path)})")
    return {**paths, "database": database}


def mlplatform_worker(database: str) -> None:
    """Profile the reference, compare the current table against it; print the figures as JSON."""
    with duckdb.connect(database, read_only=True, config={"memory_limit": DUCKDB_MEMORY_LIMIT}) as con:
        con.execute("SET enable_progress_bar = false")
        start, start_cpu = time.perf_counter(), time.process_time()
        reference = profile(con, "reference", KINDS)
        profiled, profiled_cpu = time.perf_counter(), time.process_time()
        report = compare(reference, con, "current")
        compared, compared_cpu = time.perf_counter(), time.process_time()
    saved = json.dumps(report.to_dict())
    start_tick = time.perf_counter()
    dataset_drift = DriftReport.from_dict(json.loads(saved)).dataset_drift
    tick = time.perf_counter() - start_tick
    result = {
        "profile_seconds": profiled - start,
        "compare_seconds": compared - profiled,
        "cpu_seconds": compared_cpu - start_cpu,
        "profile_cpu_seconds": profiled_cpu - start_cpu,
        "sensor_tick_seconds": tick,
        "dataset_drift": dataset_drift,
        "profile_kb": len(json.dumps(reference)) / 1024,
        "columns": {
            row.column: {"method": row.test, "score": row.statistic, "drifted": row.drifted, "psi": row.psi}
            for row in report.columns
        },
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result))


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def run_json(command: list[str]) -> dict:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise SystemExit(f"{command[0]} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_mlplatform(database: Path, repeat: int) -> dict:
    """The median of ``repeat`` fresh-process runs (by profile + compare), with every run's two timings."""
    runs = [run_json([sys.executable, __file__, "--worker", str(database)]) for _ in range(repeat)]
    runs.sort(key=lambda run: run["profile_seconds"] + run["compare_seconds"])
    median = dict(runs[len(runs) // 2])
    median["runs"] = [(run["profile_seconds"], run["compare_seconds"]) for run in runs]
    median["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return median


def runs_text(result: dict) -> str:
    return "; ".join(f"{profiled:.2f} + {compared:.2f} s" for profiled, compared in result["runs"])


def run_evidently(python: str, files: dict[str, Path]) -> dict:
    return run_json([python, "-c", EVIDENTLY_RUN, str(files["reference"]), str(files["current"]), json.dumps(KINDS)])


def report(rows: int, large_rows: int, ours: dict, theirs: dict, large: dict, load_before: str) -> str:
    ours_total = ours["profile_seconds"] + ours["compare_seconds"]
    flagged = {
        side: sorted(c for c, r in result["columns"].items() if r["drifted"])
        for side, result in (("ours", ours), ("theirs", theirs))
    }
    lines = [
        "## Column drift against Evidently",
        "",
        f"{rows:,} reference rows against {rows:,} current rows, 15 columns (9 numeric, 6 categorical), drift planted "
        f"in {len(DRIFTED)}: {', '.join(DRIFTED)}. Generated in DuckDB SQL, written as Parquet, and loaded into a "
        "DuckDB file (mlplatform) or pandas (Evidently) before timing: Parquet reading is timed on neither side. "
        "Each side runs in a fresh subprocess; peak RSS is its `VmHWM`.",
        "",
        "What mlplatform's clock covers: the reference and current rows are stored tables of a DuckDB file, opened "
        "read-only by a fresh process (a cold buffer pool, so reading the file is timed); `profile` and `compare` "
        "each read every column once (one `GROUP BY` per column, run as one `UNION ALL` query), and `profile` first "
        "asks for each numeric column's min and max, which DuckDB answers from the table's statistics. "
        f"mlplatform ran {len(ours['runs'])} times (fresh process each); the table shows the median run, the "
        f"others are listed below. Evidently ran once.",
        "",
        "- **mlplatform**: `drift.profile` of the reference (once per model version, saved with it) and "
        f"`drift.compare` of the current rows against the saved profile, DuckDB `memory_limit` {DUCKDB_MEMORY_LIMIT}.",
        "- **Evidently 0.7.23**: `Dataset.from_pandas` of both frames, then `Report([DataDriftPreset()]).run`, "
        "in its own environment (a virtual environment built from `requirements-evidently.lock`).",
        "",
        "Command (from the repository root):",
        "",
        "```",
        ".venv/bin/python benchmarks/drift_vs_evidently.py --evidently-python .evenv/bin/python --write-docs",
        "```",
        "",
        "| | mlplatform | Evidently 0.7.23 |",
        "|---|---:|---:|",
        f"| profile the reference (s) | {ours['profile_seconds']:.2f} | - |",
        f"| compare current against the profile (s) | {ours['compare_seconds']:.2f} | - |",
        f"| total (s) | {ours_total:.2f} | {theirs['seconds']:.2f} |",
        f"| peak RSS (MB) | {ours['peak_rss_mb']:,.0f} | {theirs['peak_rss_mb']:,.0f} |",
        f"| saved profile (KB of JSON) | {ours['profile_kb']:,.0f} | - |",
        f"| columns flagged | {', '.join(flagged['ours'])} | {', '.join(flagged['theirs'])} |",
        "",
        "| column | test | mlplatform score | Evidently score | drift |",
        "|---|---|---:|---:|---|",
        *(
            f"| {name} | {ours['columns'][name]['method']} | {ours['columns'][name]['score']:.6g} | "
            f"{theirs['columns'][name]['score']:.6g} | {'yes' if ours['columns'][name]['drifted'] else 'no'} |"
            for name in COLUMNS
        ),
        "",
        f"- Same columns flagged by both, and they are the planted ones: "
        f"{'yes' if flagged['ours'] == flagged['theirs'] == DRIFTED else 'NO'}.",
        f"- Speed, compare alone: {theirs['seconds'] / ours['compare_seconds']:.0f}x Evidently; profile and compare "
        f"together: {theirs['seconds'] / ours_total:.0f}x (target at least {TARGET_SPEEDUP}x: "
        f"{'met' if theirs['seconds'] / ours_total >= TARGET_SPEEDUP else 'not met'}).",
        f"- {large_rows:,} against {large_rows:,}, mlplatform alone: profile {large['profile_seconds']:.2f} s, compare "
        f"{large['compare_seconds']:.2f} s, together {large['profile_seconds'] + large['compare_seconds']:.2f} s "
        f"(target under {TARGET_LARGE_SECONDS} s: "
        f"{'met' if large['profile_seconds'] + large['compare_seconds'] < TARGET_LARGE_SECONDS else 'not met'}); "
        f"peak RSS {large['peak_rss_mb']:,.0f} MB (target under {TARGET_PEAK_MB:,} MB: "
        f"{'met' if large['peak_rss_mb'] < TARGET_PEAK_MB else 'not met'}).",
        f"- Every mlplatform run, profile + compare: {rows:,} rows: {runs_text(ours)}; {large_rows:,} rows: "
        f"{runs_text(large)} (peak RSS is the largest of the runs).",
        f"- CPU time of the median runs (all DuckDB threads, profile + compare), which other work on the cores "
        f"does not inflate: {rows:,} rows: {ours['profile_cpu_seconds']:.2f} + "
        f"{ours['cpu_seconds'] - ours['profile_cpu_seconds']:.2f} s; {large_rows:,} rows: "
        f"{large['profile_cpu_seconds']:.2f} + {large['cpu_seconds'] - large['profile_cpu_seconds']:.2f} s, "
        f"on {len(os.sched_getaffinity(0))} cores.",
        f"- A sensor tick, reading a saved report's JSON and deciding dataset drift: "
        f"{ours['sensor_tick_seconds'] * 1e6:.0f} µs.",
        "",
        f"Machine: {machine()} Load average (1, 5, 15 min) before the benchmark: {load_before}; after: {load()} "
        "(other work shares these cores, so a load above the core count means fewer cycles for this run).",
        "",
    ]
    return "\n".join(lines)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("duckdb", "numpy"))
    return (
        f"{model or platform.processor()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, "
        f"{versions}, {dt.datetime.now(dt.UTC):%Y-%m-%d}."
    )


def load() -> str:
    return ", ".join(f"{average:.2f}" for average in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--evidently-python", default=str(REPO / ".evenv" / "bin" / "python"))
    parser.add_argument("--write-docs", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process mlplatform runs per size (median shown)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mlplatform_worker(args.worker)
        return
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="drift-benchmark-") as folder:
        files = generate(Path(folder), args.rows)
        ours = run_mlplatform(files["database"], args.repeat)
        theirs = run_evidently(args.evidently_python, files)
        for path in files.values():
            path.unlink()
        large = run_mlplatform(generate(Path(folder), args.large_rows)["database"], args.repeat)
    text = report(args.rows, args.large_rows, ours, theirs, large, load_before)
    print(text)
    if args.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
