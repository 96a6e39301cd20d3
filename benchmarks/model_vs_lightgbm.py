"""The platform's PyTorch delay model beside LightGBM: same features, same time-based split, several months.

The flights dataset (``mlplatform.datasets.get_dataset("flights")``): its declared features, model and training
window.

Setup (not timed): seed the real landing zone in a scratch folder and, with the platform's Dagster-free
functions, load the reference tables, load and validate every month of 2013 into one DuckDB file and build the
dataset's ``features`` for each month, as the ingestion, validation and features assets do. For each target
month, ``build_training_set`` takes the declared window (``training.window_periods``, 6 months) before it to
train on and holds the target month out, and the table is exported to Parquet.

Timed, each model in a fresh subprocess so that its peak RSS is its own, all limited to 2 threads:

* ``delay model``: ``mlplatform.ml.training.train`` with the dataset's declared model (its ``predictor`` section
  in defs.yaml; ``torch.set_num_threads``).
* ``LightGBM``: the categorical columns as native categoricals (the delay model's vocabularies, fitted on the
  same rows; an unseen value is missing), the numeric columns as they are (null is missing), early stopping
  on the same latest slice of the window that the delay model stops on (``split_by_time``).
* ``LightGBM, raw columns``: the baseline the delay model must reach (issue 13): LightGBM's default parameters
  (100 rounds) on the whole window, on the raw columns only (the scheduled hour, carrier, origin, dest,
  distance, weekday and the origin's weather that hour), none of the platform's engineered features.

Both are scored on the held-out month's labelled flights with ``mlplatform.ml.evaluation.summary``.

    .venv/bin/python benchmarks/model_vs_lightgbm.py --months 2013-07
    .venv/bin/python benchmarks/model_vs_lightgbm.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from statistics import mean

import duckdb
import numpy as np
import polars as pl
import torch
from docs_section import DOCS, write_section

from mlplatform.data.features import build_features
from mlplatform.data.landing import period_file, reference_file, seed
from mlplatform.data.sql import sql_string
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import load_raw_partition, load_reference
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import TRAINING_SET_TABLE
from mlplatform.ml.evaluation import summary
from mlplatform.ml.model import Preprocessor
from mlplatform.ml.training import split_by_time, train
from mlplatform.ml.training_set import HOLDOUT, SPLIT_COLUMN, TRAIN, build_training_set, window_periods
from mlplatform.orchestration.resources import DUCKDB_MEMORY_LIMIT

REPO = Path(__file__).resolve().parent.parent
SECTION = "Delay model vs LightGBM"

FLIGHTS = get_dataset("flights")
MODEL = FLIGHTS.model  # the declared predictor: features, label, hyperparameters
CATEGORICAL, NUMERIC, LABEL = MODEL.categorical, MODEL.numeric, MODEL.label
TIME_ORDER = FLIGHTS.declaration.training.time_order
ALL_MONTHS = FLIGHTS.periods.parse_spec(FLIGHTS.declaration.seed.periods)  # 2013-01..2013-12
FIRST_MONTH, LAST_MONTH = ALL_MONTHS[0], ALL_MONTHS[-1]
DEFAULT_TARGETS = ("2013-07", "2013-08", "2013-10", "2013-12")
WINDOW_MONTHS = FLIGHTS.declaration.training.window_periods

THREADS = 2
DELAY_MODEL, LIGHTGBM, RAW_BASELINE = "delay model", "LightGBM", "LightGBM, raw columns"
MODELS = (DELAY_MODEL, LIGHTGBM, RAW_BASELINE)
LIGHTGBM_ROUNDS = 1000
LIGHTGBM_EARLY_STOPPING = 50
LIGHTGBM_PARAMS = {
    "objective": "binary",
    "metric": "binary_logloss",  # what the delay model stops on: the validation slice's cross-entropy
    "num_leaves": 63,
    "learning_rate": 0.05,
    "num_threads": THREADS,
    "seed": MODEL.hyperparameters.seed,
    "deterministic": True,
    "verbosity": -1,
}
# The raw-columns baseline: what a tabular model reaches without the platform's feature engineering.
RAW_CATEGORICAL = ["carrier", "origin", "dest"]
RAW_NUMERIC = ["sched_hour", "weekday", "distance", "temp", "dewp", "humid", "wind_speed", "wind_gust", "precip",
               "pressure", "visib"]  # fmt: skip
RAW_BASELINE_ROUNDS = 100  # LightGBM's defaults: 100 rounds, 31 leaves, learning rate 0.1
# Before each run, wait (up to --quiet-wait seconds) until other processes have used under a quarter of a core
# for a few seconds: torch's 2 threads slow down many times over when another process holds a core.
QUIET_CORES = 0.25
QUIET_WINDOW_SECONDS = 3.0
METRICS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss"}


# --- Setup (not timed) --------------------------------------------------------------------------------


def connect(database: Path) -> duckdb.DuckDBPyConnection:
    """A connection configured as the platform's DuckDB resource configures it."""
    return duckdb.connect(str(database), config={"memory_limit": DUCKDB_MEMORY_LIMIT})


def build_warehouse(workdir: Path) -> Path:
    """Seed the landing zone, then load the reference tables, load, validate and build the features of every
    month of 2013."""
    landing = workdir / "landing"
    seed(landing, FLIGHTS, ALL_MONTHS)
    database = workdir / "warehouse.duckdb"
    features = FLIGHTS.declaration.features
    with connect(database) as con:
        for table in FLIGHTS.reference:  # the feature SQL sees every reference table
            load_reference(con, FLIGHTS, FLIGHTS.contracts[table], reference_file(landing, FLIGHTS, table))
        for month in ALL_MONTHS:
            for source in FLIGHTS.sources:
                contract = FLIGHTS.contracts[source]
                load_raw_partition(con, FLIGHTS, contract, month, period_file(landing, FLIGHTS, source, month))
                split_partition(con, FLIGHTS, contract, month)
        for month in ALL_MONTHS:  # each month's rates read the clean flights of the months before it
            build_features(con, FLIGHTS, month, dict(features.params), features.lookback_periods)
    return database


def export_training_set(database: Path, target_month: str, path: Path) -> dict[str, tuple[int, float]]:
    """Build the training set held out on ``target_month`` and write it to Parquet; each split's rows and
    delay rate (of its labelled flights)."""
    table = FLIGHTS.table(TRAINING_SET_TABLE)
    with connect(database) as con:
        build_training_set(con, FLIGHTS, target_month, WINDOW_MONTHS)
        con.execute(f"COPY {table} TO {sql_string(path)} (FORMAT parquet)")
        query = f"SELECT {SPLIT_COLUMN}, count(*), avg({LABEL}::DOUBLE) FROM {table} GROUP BY 1"
        splits = con.execute(query).fetchall()
    return {split: (rows, delay_rate) for split, rows, delay_rate in splits}


# --- Training (each model runs in its own subprocess) -----------------------------------------------------

Scorer = Callable[[pl.DataFrame], np.ndarray]


def train_delay_model(rows: pl.DataFrame) -> tuple[Scorer, int]:
    """The platform's trainer with the dataset's declared model; the scorer and the best epoch."""
    torch.set_num_threads(THREADS)
    result = train(rows, MODEL, TIME_ORDER)
    return result.model.predict, result.best_epoch


def lightgbm_features(frame: pl.DataFrame, vocabularies: dict[str, list[str]]) -> np.ndarray:
    """Categorical columns as their index in the vocabulary (NaN when unseen or null), then numeric columns."""
    codes = [
        pl.col(column)
        .cast(pl.String)
        .replace_strict(vocabularies[column], range(len(vocabularies[column])), default=None, return_dtype=pl.Float64)
        for column in CATEGORICAL
    ]
    numeric = [pl.col(column).cast(pl.Float64) for column in NUMERIC]
    return frame.select(*codes, *numeric).to_numpy()


def train_lightgbm(rows: pl.DataFrame) -> tuple[Scorer, int]:
    """LightGBM stopped early on the delay model's validation slice; the scorer and the best round."""
    import lightgbm  # here, so that the delay model's process never loads it

    fit_rows, validation_rows = split_by_time(rows, LABEL, TIME_ORDER, MODEL.hyperparameters.validation_share)
    vocabularies = Preprocessor.fit(fit_rows, CATEGORICAL, NUMERIC).vocabularies

    def dataset(frame: pl.DataFrame, **options: object) -> lightgbm.Dataset:
        features = lightgbm_features(frame, vocabularies)
        return lightgbm.Dataset(features, label=frame[LABEL].cast(pl.Int8).to_numpy(), **options)

    names = [*CATEGORICAL, *NUMERIC]
    fit = dataset(fit_rows, feature_name=names, categorical_feature=list(CATEGORICAL))
    booster = lightgbm.train(
        LIGHTGBM_PARAMS,
        fit,
        num_boost_round=LIGHTGBM_ROUNDS,
        valid_sets=[dataset(validation_rows, reference=fit)],
        callbacks=[lightgbm.early_stopping(LIGHTGBM_EARLY_STOPPING, verbose=False)],
    )

    def score(frame: pl.DataFrame) -> np.ndarray:
        return booster.predict(lightgbm_features(frame, vocabularies), num_iteration=booster.best_iteration)

    return score, booster.best_iteration


def train_raw_baseline(rows: pl.DataFrame) -> tuple[Scorer, int]:
    """LightGBM's defaults on every labelled row of the window and the raw columns only; no early stopping."""
    import lightgbm

    labelled = rows.filter(pl.col(LABEL).is_not_null())
    vocabularies = Preprocessor.fit(labelled, RAW_CATEGORICAL, []).vocabularies

    def features(frame: pl.DataFrame) -> np.ndarray:
        codes = [
            pl.col(column)
            .cast(pl.String)
            .replace_strict(
                vocabularies[column], range(len(vocabularies[column])), default=None, return_dtype=pl.Float64
            )
            for column in RAW_CATEGORICAL
        ]
        return frame.select(*codes, *[pl.col(column).cast(pl.Float64) for column in RAW_NUMERIC]).to_numpy()

    fit = lightgbm.Dataset(
        features(labelled),
        label=labelled[LABEL].cast(pl.Int8).to_numpy(),
        feature_name=[*RAW_CATEGORICAL, *RAW_NUMERIC],
        categorical_feature=RAW_CATEGORICAL,
    )
    params = {"objective": "binary", "num_threads": THREADS, "seed": MODEL.hyperparameters.seed, "verbosity": -1}
    booster = lightgbm.train(params, fit, num_boost_round=RAW_BASELINE_ROUNDS)
    return (lambda frame: booster.predict(features(frame))), RAW_BASELINE_ROUNDS


TRAINERS: dict[str, Callable[[pl.DataFrame], tuple[Scorer, int]]] = {
    DELAY_MODEL: train_delay_model,
    LIGHTGBM: train_lightgbm,
    RAW_BASELINE: train_raw_baseline,
}


def reset_peak_rss() -> None:
    """Restart this process's ``VmHWM`` from its current RSS (Linux 4.0+), so the peak that follows is training's."""
    Path("/proc/self/clear_refs").write_text("5")


def memory_mb(field: str) -> float:
    """This process's ``VmRSS`` (now) or ``VmHWM`` (peak since it started), in MB.

    Not ``ru_maxrss``: on Linux that carries over the spawning parent's peak through fork and exec, and it
    cannot be reset.
    """
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith(f"{field}:"))


def run_model(model: str, training_set: Path) -> dict:
    """Train ``model`` on the training set's window and score its held-out month."""
    frame = pl.read_parquet(training_set)
    holdout = frame.filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(LABEL).is_not_null())
    train_rows = frame.filter(pl.col(SPLIT_COLUMN) == TRAIN)
    reset_peak_rss()
    rss_before_mb = memory_mb("VmRSS")
    busy_before, own_before, start = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    score, best_iteration = TRAINERS[model](train_rows)
    train_seconds = time.perf_counter() - start
    peak_mb = memory_mb("VmHWM")
    other_cpu_seconds = machine_busy_seconds() - busy_before - (own_cpu_seconds() - own_before)
    metrics = summary(holdout[LABEL].cast(pl.Int8).to_numpy(), score(holdout))
    return {
        **{name: metrics[name] for name in METRICS},
        "train_seconds": train_seconds,
        "peak_mb": peak_mb,
        "rss_before_training_mb": rss_before_mb,
        "other_cpu_seconds": max(0.0, other_cpu_seconds),
        "best_iteration": best_iteration,
    }


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (every core together)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet_machine(limit_seconds: float) -> None:
    """Return once other processes have used under ``QUIET_CORES`` for a window, or after ``limit_seconds``."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        before = machine_busy_seconds()
        time.sleep(QUIET_WINDOW_SECONDS)
        if machine_busy_seconds() - before < QUIET_CORES * QUIET_WINDOW_SECONDS:
            return


def measure(model: str, training_set: Path, quiet_wait: float) -> dict:
    """Run one model in a fresh interpreter, once the machine is quiet, and return its figures."""
    wait_for_quiet_machine(quiet_wait)
    command = [sys.executable, __file__, "--child", model, "--training-set", str(training_set)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{model} failed on {training_set.name}:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- Report ----------------------------------------------------------------------------------------------


def results_table(results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| target month | model | ROC AUC | PR AUC | log loss | train s | peak MB | others' CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for month, by_model in results.items():
        for model, r in by_model.items():
            lines.append(
                f"| {month} | {model} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | {r['log_loss']:.4f} "
                f"| {r['train_seconds']:.1f} | {r['peak_mb']:,.0f} | {r['other_cpu_seconds']:.1f} |"
            )
    return "\n".join(lines)


def comparison(results: dict[str, dict[str, dict]]) -> list[str]:
    """Who wins each metric in how many months and by how much, against each LightGBM, and what each costs."""

    def each(model: str, name: str) -> list[float]:
        return [by_model[model][name] for by_model in results.values()]

    months = len(results)
    lines = []
    for rival in (RAW_BASELINE, LIGHTGBM):
        for name, label in METRICS.items():
            gaps = [b - a for a, b in zip(each(DELAY_MODEL, name), each(rival, name), strict=True)]
            rival_wins = sum((gap < 0) if name == "log_loss" else (gap > 0) for gap in gaps)
            lines.append(
                f"- {label}, {rival}: better in {rival_wins} of {months} months, the delay model in "
                f"{months - rival_wins}; {rival} minus delay model {mean(gaps):+.4f} on average "
                f"(from {min(gaps):+.4f} to {max(gaps):+.4f})."
            )
    seconds = {model: sum(each(model, "train_seconds")) for model in MODELS}
    peaks = {model: mean(each(model, "peak_mb")) for model in MODELS}
    growth = {model: peaks[model] - mean(each(model, "rss_before_training_mb")) for model in MODELS}
    stopped = "; ".join(
        f"{month}: {by_model[DELAY_MODEL]['best_iteration']} / {by_model[LIGHTGBM]['best_iteration']}"
        for month, by_model in results.items()
    )
    return [
        *lines,
        "- Training time, all months together: " + ", ".join(f"{m} {seconds[m]:.1f} s" for m in MODELS) + ".",
        "- Peak memory, mean over months (above what was resident when training began): "
        + ", ".join(f"{m} {peaks[m]:,.0f} MB ({growth[m]:,.0f})" for m in MODELS)
        + ".",
        f"- Best epoch of the delay model / best round of LightGBM: {stopped}.",
    ]


def command_line() -> str:
    return shlex.join([".venv/bin/python", str(Path(__file__).resolve().relative_to(REPO)), *sys.argv[1:]])


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    libraries = ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "lightgbm", "polars", "duckdb"))
    return (
        f"{cpu}, {os.cpu_count()} cores, {ram_gib:.1f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {libraries}"
    )


def section(
    results: dict[str, dict[str, dict]], splits: dict[str, dict[str, tuple[int, float]]], repeats: int, started: str
) -> str:
    before = [by_model[model]["rss_before_training_mb"] for by_model in results.values() for model in MODELS]
    split_rows = "\n".join(
        f"| {month} | {s[TRAIN][0]:,} | {s[TRAIN][1]:.1%} | {s[HOLDOUT][0]:,} | {s[HOLDOUT][1]:.1%} |"
        for month, s in splits.items()
    )
    categoricals = ", ".join(f"`{column}`" for column in CATEGORICAL)
    raw_categoricals = ", ".join(f"`{column}`" for column in RAW_CATEGORICAL)
    raw_numerics = ", ".join(f"`{column}`" for column in RAW_NUMERIC)
    validation_share = MODEL.hyperparameters.validation_share
    tuning = (
        f"`num_leaves` {LIGHTGBM_PARAMS['num_leaves']}, `learning_rate` {LIGHTGBM_PARAMS['learning_rate']}, "
        f"up to {LIGHTGBM_ROUNDS} rounds"
    )
    return f"""## {SECTION}

The platform's PyTorch delay model beside LightGBM {metadata.version("lightgbm")}, on the same features and on
the raw columns, with the same time-based split: trained on the {WINDOW_MONTHS} months before a target month,
scored on the target month, exactly as `build_training_set` builds it.

- Features: the flights dataset's feature SQL through the platform's Dagster-free functions
  (`load_raw_partition` -> `split_partition` -> `build_features`, every month of 2013) into a scratch DuckDB
  file; not timed.
- Delay model: `mlplatform.ml.training.train` with the flights dataset's declared model (defs.yaml's
  `predictor`), on CPU.
- LightGBM: {tuning}, stopped after {LIGHTGBM_EARLY_STOPPING} rounds without a lower log loss
  on the latest {validation_share:.0%} of the window, the slice the delay model stops on (`split_by_time`);
  {categoricals} as native categoricals with the delay model's vocabularies (an
  unseen value is missing), the {len(NUMERIC)} numeric columns as they are (null is missing).
- LightGBM, raw columns (the baseline of issue 13): LightGBM's default parameters, {RAW_BASELINE_ROUNDS} rounds on
  every labelled row of the window (no slice held back), on {raw_categoricals} as native categoricals and
  {raw_numerics} as numbers: the raw columns, none of the engineered features.
- Delay model: after early stopping on the latest slice it trains again on the whole window for the best epoch
  count (`refit`).
- Threads: all limited to {THREADS}: `torch.set_num_threads({THREADS})` and LightGBM `num_threads={THREADS}`.
- Metrics: the held-out month's labelled flights, `mlplatform.ml.evaluation.summary`.
- Train s: wall seconds of the training call, preprocessing included, scoring excluded. Each model ran {repeats}
  time(s) per month, the models taking turns, each run once other processes had used under {QUIET_CORES} of a core
  for {QUIET_WINDOW_SECONDS:.0f} s (or after waiting the limit); the fastest run is shown (the metrics never
  change: same data, same seed). Others' CPU s: CPU seconds other processes used during that training call, from
  `/proc/stat`: how much the shared machine disturbed the timing.
- Peak MB: `VmHWM` of the model's own fresh subprocess, reset (`/proc/self/clear_refs`) just before training
  and read just after. It includes what was already resident, {min(before):,.0f}–{max(before):,.0f} MB: the
  interpreter, the libraries (every process imports torch through `mlplatform.ml.model`) and the training set.
- Machine: the one described above ({machine()}). Run {started}.

| target month | training rows | their delay rate | held-out rows | their delay rate |
|---|---:|---:|---:|---:|
{split_rows}

Command (from the repository root):

```
{command_line()}
```

{results_table(results)}

{chr(10).join(comparison(results))}
"""


# --- Command line ----------------------------------------------------------------------------------------


def target_months(spec: str) -> list[str]:
    """``2013-07,2013-10`` or ``2013-07..2013-12``: months whose whole training window is in the data."""
    months = [month for part in spec.split(",") for month in FLIGHTS.periods.parse_spec(part.strip())]
    for month in months:
        if window_periods(FLIGHTS, month, WINDOW_MONTHS)[0] < FIRST_MONTH or month > LAST_MONTH:
            raise argparse.ArgumentTypeError(
                f"{month}: its {WINDOW_MONTHS}-month window and itself must lie in {FIRST_MONTH}..{LAST_MONTH}"
            )
    return months


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--months",
        type=target_months,
        default=list(DEFAULT_TARGETS),
        help=f"target months held out, e.g. 2013-07,2013-10 or 2013-07..2013-12 (default {','.join(DEFAULT_TARGETS)})",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each model per month; the fastest is reported (default 1)"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="most seconds to wait for a quiet machine before each run"
    )
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOCS.relative_to(REPO)}")
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--training-set", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def fastest_runs(training_set: Path, repeats: int, quiet_wait: float) -> dict[str, dict]:
    """Each model's fastest of ``repeats`` runs, the models taking turns (same data and seed, same metrics)."""
    runs: dict[str, list[dict]] = {model: [] for model in MODELS}
    for repeat in range(1, repeats + 1):
        for model in MODELS:
            print(f"{training_set.stem}: {model}, run {repeat} of {repeats}", file=sys.stderr)
            runs[model].append(measure(model, training_set, quiet_wait))
    return {model: min(model_runs, key=lambda run: run["train_seconds"]) for model, model_runs in runs.items()}


def benchmark(args: argparse.Namespace, workdir: Path) -> None:
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    database = build_warehouse(workdir)
    print(f"features built: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    results: dict[str, dict[str, dict]] = {}
    splits: dict[str, dict[str, tuple[int, float]]] = {}
    for month in args.months:
        training_set = workdir / f"training_set-{month}.parquet"
        splits[month] = export_training_set(database, month, training_set)
        results[month] = fastest_runs(training_set, args.repeats, args.quiet_wait)
    print(results_table(results))
    print("\n".join(comparison(results)))
    if args.write_docs:
        write_section(SECTION, section(results, splits, args.repeats, started))
        print(f"wrote {DOCS}", file=sys.stderr)


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_model(args.child, args.training_set)))
        return
    with tempfile.TemporaryDirectory(prefix="model-vs-lightgbm-") as scratch:
        benchmark(args, Path(scratch))


if __name__ == "__main__":
    main()
