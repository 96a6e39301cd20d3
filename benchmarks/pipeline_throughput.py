"""Raw to features throughput for one monthly partition, scaled up, beside a pandas + pandera-pandas equivalent.

The flights dataset (``mlplatform.datasets.get_dataset("flights")``): its contract, feature SQL and parameters.

Setup (not timed): seed the real landing zone in a scratch folder, load and validate the real flights of
2013-01..2013-06 (the history the delay rates are computed from), the weather of 2013-07 and the reference
tables (airlines, airports, planes) into a DuckDB file, and write a scaled flights landing file for 2013-07 by
resampling the real 2013 flight rows in DuckDB SQL. Every real row is repeated about ``rows / 336,776`` times;
the copies of the rows that share (carrier, origin, sched_dep_time) are numbered and spread over the month's
days and flight numbers, so natural keys stay unique; ``time_hour`` follows the new day and every other column
keeps its real value.

Timed, each in a fresh subprocess so that its peak RSS is its own:

* ``mlplatform``: ``load_raw_partition`` -> ``split_partition`` -> ``build_features`` on a copy of the
  prepared DuckDB file, one connection per stage as the Dagster assets open them, with the platform's
  DuckDB memory limit.
* ``pandas``: the same steps with pandas and pandera's pandas backend: read the Parquet file, validate with
  a schema equivalent to the flights contract (checked against it before the run; natural-key duplicates and
  rows outside the month flagged as the platform flags them), split valid and invalid
  rows by the failure cases' index, compute the same features and write clean, quarantine and features to
  Parquet.

Both pipelines report a fingerprint of their outputs, compared to show they computed the same thing.

    .venv/bin/python benchmarks/pipeline_throughput.py --rows 1000000
    .venv/bin/python benchmarks/pipeline_throughput.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.errors
import pandera.pandas as pa
from docs_section import DOCS, write_section

from mlplatform.data.contracts import DUPLICATE_FLAG, IN_PERIOD_FLAG, REFERENCE_FLAG
from mlplatform.data.features import build_features, history_periods
from mlplatform.data.landing import period_file, reference_file, seed
from mlplatform.data.sql import sql_string
from mlplatform.data.validation import DEFAULT_BATCH_ROWS, split_partition
from mlplatform.data.warehouse import load_raw_partition, load_reference
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, clean_table, raw_table
from mlplatform.orchestration.resources import DUCKDB_MEMORY_LIMIT

REPO = Path(__file__).resolve().parent.parent
SECTION = "Raw to features, one partition"

DATASET = get_dataset("flights")
FLIGHTS, WEATHER = DATASET.contracts["flights"], DATASET.contracts["weather"]
FEATURES = DATASET.declaration.features
KEY_COLUMNS = tuple(FEATURES.key)
FEATURE_PARAMS = dict(FEATURES.params)  # smoothing_flights, delay_threshold_minutes
TIMEZONE = DATASET.declaration.landing.sources["flights"].timezone  # where a month starts and ends
NYC_ORIGINS = ["EWR", "JFK", "LGA"]  # the flights contract's origin: isin

MONTH = "2013-07"
HISTORY_MONTHS = DATASET.periods.parse_spec("2013-01..2013-06")
SOURCE_MONTHS = DATASET.periods.parse_spec("2013-01..2013-12")
COMPARED = ("mlplatform", "pandas")
# DuckDB alone reading the landed file and writing it as one table: the lower bound of any pipeline that
# persists the month at least once.
FLOOR = "duckdb"
PIPELINES = (*COMPARED, FLOOR)
STAGES = ("raw load", "validate", "features")

TARGET_ROWS_PER_SECOND = 1_000_000
TARGET_PEAK_MB = 2048

WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")


# --- Setup (not timed) --------------------------------------------------------------------------------


def connect(database: Path) -> duckdb.DuckDBPyConnection:
    """A connection configured as the platform's DuckDB resource configures it."""
    return duckdb.connect(str(database), config={"memory_limit": DUCKDB_MEMORY_LIMIT})


def prepare(workdir: Path) -> None:
    """Seed the landing zone, build the prepared warehouse and export the pandas pipeline's inputs."""
    landing = workdir / "landing"
    seed(landing, DATASET, SOURCE_MONTHS)
    with connect(workdir / "prepared.duckdb") as con:
        for table in DATASET.reference:  # the feature SQL sees every reference table
            load_reference(con, DATASET, DATASET.contracts[table], reference_file(landing, DATASET, table))
        for month in HISTORY_MONTHS:
            load_raw_partition(con, DATASET, FLIGHTS, month, period_file(landing, DATASET, "flights", month))
            split_partition(con, DATASET, FLIGHTS, month)
        load_raw_partition(con, DATASET, WEATHER, MONTH, period_file(landing, DATASET, "weather", MONTH))
        split_partition(con, DATASET, WEATHER, MONTH)
        inputs = workdir / "pandas_inputs"
        inputs.mkdir(exist_ok=True)
        # Timestamps are written as UTC instants, whatever the session's time zone.
        exports = {
            "history": "SELECT * REPLACE (time_hour::TIMESTAMPTZ AS time_hour) "
            f"FROM {DATASET.table(clean_table('flights'))}",
            "weather": "SELECT * REPLACE (time_hour::TIMESTAMPTZ AS time_hour) "
            f"FROM {DATASET.table(clean_table('weather'))} WHERE {PERIOD_COLUMN} = '{MONTH}'",
            **{table: f"SELECT * FROM {DATASET.table(table)}" for table in ("planes", "airlines", "airports")},
        }
        for name, query in exports.items():
            con.execute(f"COPY ({query}) TO {sql_string(inputs / f'{name}.parquet')} (FORMAT parquet)")


def build_scaled_partition(workdir: Path, rows: int) -> Path:
    """Write ``rows`` flights of 2013-07, resampled from the real 2013 flights, as a Parquet landing file."""
    target = workdir / "scaled" / f"flights-{MONTH}-{rows}.parquet"
    target.parent.mkdir(exist_ok=True)
    year, month = (int(part) for part in MONTH.split("-"))
    with duckdb.connect() as con:
        for source_month in SOURCE_MONTHS:
            path = period_file(workdir / "landing", DATASET, "flights", source_month)
            load_raw_partition(con, DATASET, FLIGHTS, source_month, path)
        # The rows sharing (carrier, origin, sched_dep_time) are numbered 0, 1, ... across all copies, and that
        # number picks the day and the flight number: no two rows share a natural key.
        con.execute(
            f"""
            CREATE TABLE source AS SELECT
                row_number() OVER (ORDER BY {PERIOD_COLUMN}, day, sched_dep_time, carrier, flight, origin) - 1
                    AS source_row,
                row_number() OVER (
                    PARTITION BY carrier, origin, sched_dep_time ORDER BY {PERIOD_COLUMN}, day, flight
                ) - 1 AS slot,
                count(*) OVER (PARTITION BY carrier, origin, sched_dep_time) AS slots,
                (hash(carrier, origin, sched_dep_time) % 9999)::BIGINT AS key_offset,
                *
            FROM {DATASET.table(raw_table("flights"))}
            """
        )
        source_rows = con.execute("SELECT count(*) FROM source").fetchall()[0][0]
        columns = ", ".join(
            {
                "year": f"{year}::BIGINT AS year",
                "month": f"{month}::BIGINT AS month",
                # The scheduled hour, local to New York, as a UTC instant: what the real files hold.
                "time_hour": f"timezone('America/New_York', make_timestamp({year}, {month}, day, hour, 0, 0)) "
                "AS time_hour",
            }.get(name, name)
            for name in FLIGHTS.columns
        )
        con.execute(
            f"""
            COPY (
                WITH numbered AS (
                    SELECT r.i, s.* EXCLUDE (day, flight), (r.i // $source_rows) * s.slots + s.slot AS number
                    FROM range($rows) AS r(i) JOIN source AS s ON s.source_row = r.i % $source_rows
                ),
                scaled AS (
                    SELECT *, 1 + (key_offset + number) % 31 AS day, 1 + (key_offset + number // 31) % 9999 AS flight
                    FROM numbered
                )
                SELECT {columns} FROM scaled ORDER BY day, dep_time NULLS LAST, i
            ) TO {sql_string(target)} (FORMAT parquet)
            """,
            {"rows": rows, "source_rows": source_rows},
        )
    return target


# --- Timed pipelines (each runs in its own subprocess) ---------------------------------------------------


@contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - start


def run_mlplatform(workdir: Path, scaled: Path, batch_rows: int) -> dict:
    """raw -> clean -> features with the platform's functions, one connection per stage like the assets."""
    database = workdir / "run" / "mlplatform.duckdb"
    seconds: dict[str, float] = {}
    with timed(seconds, "raw load"), connect(database) as con:
        load_raw_partition(con, DATASET, FLIGHTS, MONTH, scaled)
    with timed(seconds, "validate"), connect(database) as con:
        counts = split_partition(con, DATASET, FLIGHTS, MONTH, batch_rows=batch_rows)
    with timed(seconds, "features"), connect(database) as con:
        build_features(con, DATASET, MONTH, FEATURE_PARAMS, FEATURES.lookback_periods)
    with connect(database) as con:
        fingerprint = duckdb_fingerprint(con)
    return {"seconds": seconds, "quarantined": counts.quarantined, "fingerprint": fingerprint}


def run_floor(workdir: Path, scaled: Path) -> dict:
    """The lower bound: DuckDB reads the landed file and writes it as one table, nothing else."""
    seconds: dict[str, float] = {}
    with timed(seconds, "read and write"), connect(workdir / "run" / "floor.duckdb") as con:
        con.execute(f"CREATE TABLE landed AS SELECT * FROM read_parquet({sql_string(scaled)})")
    return {"seconds": seconds}


def duckdb_fingerprint(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    row = con.execute(
        f"""
        SELECT count(*), count_if(is_delayed), count_if(is_cancelled), count(temp), sum(plane_age),
               sum(days_to_holiday), sum(carrier_delay_rate), sum(route_delay_rate), sum(origin_hour_delay_rate)
        FROM {DATASET.table(FEATURES_TABLE)} WHERE {PERIOD_COLUMN} = ?
        """,
        [MONTH],
    ).fetchall()[0]
    return dict(zip(FINGERPRINT, (float(value) for value in row), strict=True))


FINGERPRINT = (
    "feature rows",
    "delayed",
    "cancelled",
    "with weather",
    "sum plane_age",
    "sum days_to_holiday",
    "sum carrier_delay_rate",
    "sum route_delay_rate",
    "sum origin_hour_delay_rate",
)


def pandas_flights_schema() -> pa.DataFrameSchema:
    """The flights contract (src/mlplatform/defs/flights/contract.yaml) written for pandera's pandas backend."""

    def clock(name: str) -> pa.Check:
        return pa.Check(lambda s: s.between(0, 2400) & (s % 100 < 60), name=f"{name}_hhmm")

    def integer(*checks: pa.Check, nullable: bool = False) -> pa.Column:
        return pa.Column("Int64", checks=list(checks), nullable=nullable)

    def text(pattern: str, nullable: bool = False) -> pa.Column:
        return pa.Column(str, checks=[pa.Check.str_matches(pattern)], nullable=nullable)

    return pa.DataFrameSchema(
        {
            "year": integer(),
            "month": integer(pa.Check.in_range(1, 12)),
            "day": integer(pa.Check.in_range(1, 31)),
            "dep_time": integer(clock("dep_time"), nullable=True),
            "sched_dep_time": integer(clock("sched_dep_time")),
            "dep_delay": integer(pa.Check.in_range(-120, 1800), nullable=True),
            "arr_time": integer(clock("arr_time"), nullable=True),
            "sched_arr_time": integer(clock("sched_arr_time")),
            "arr_delay": integer(pa.Check.in_range(-180, 1800), nullable=True),
            "carrier": text(r"^[A-Z0-9]{2}$"),
            "flight": integer(pa.Check.in_range(1, 9999)),
            "tailnum": text(r"^[A-Z0-9]{2,7}$", nullable=True),
            "origin": pa.Column(str, checks=[pa.Check.isin(NYC_ORIGINS)]),
            "dest": text(r"^[A-Z]{3}$"),
            "air_time": integer(pa.Check.in_range(1, 900), nullable=True),
            "distance": integer(pa.Check.in_range(1, 6000)),
            "hour": integer(pa.Check.in_range(0, 23)),
            "minute": integer(pa.Check.in_range(0, 59)),
            "time_hour": pa.Column("datetime64[us]"),
            DUPLICATE_FLAG: pa.Column(bool, checks=[pa.Check.eq(False, name="unique_natural_key")]),
            IN_PERIOD_FLAG: pa.Column(bool, checks=[pa.Check.eq(True, name="in_period")]),
            **{
                REFERENCE_FLAG.format(column=column): pa.Column(
                    bool, checks=[pa.Check.eq(True, name=f"references({table}.{key})")]
                )
                for column, (table, key) in FLIGHTS.references.items()
            },
        },
        checks=[
            pa.Check(
                lambda df: df["sched_dep_time"] == df["hour"] * 100 + df["minute"], name="sched_dep_time_is_hour_minute"
            )
        ],
        name="flights",
    )


def check_schema_parity() -> None:
    """Fail unless the pandas schema has the contract's columns, nullability and check names."""

    def shape(schema: pa.DataFrameSchema) -> tuple:
        columns = {
            name: (column.nullable, sorted(check.name for check in column.checks))
            for name, column in schema.columns.items()
        }
        return columns, sorted(check.name for check in schema.checks)

    contract, pandas = shape(FLIGHTS.schema()), shape(pandas_flights_schema())
    if contract != pandas:
        raise SystemExit(f"the pandas schema no longer matches the flights contract:\n{contract}\n{pandas}")


def run_pandas(workdir: Path, scaled: Path) -> dict:
    """The same raw -> clean -> features work with pandas and pandera's pandas backend."""
    inputs, output = workdir / "pandas_inputs", workdir / "run" / "pandas"
    seconds: dict[str, float] = {}

    with timed(seconds, "raw load"):
        frame = pd.read_parquet(scaled)
        frame = frame.astype({name: "Int64" for name, t in FLIGHTS.sql_types.items() if t == "BIGINT"})
        frame["time_hour"] = frame["time_hour"].dt.tz_convert(None)

    with timed(seconds, "validate"):
        frame[DUPLICATE_FLAG] = duplicate_flags(frame, list(FLIGHTS.natural_key))
        frame[IN_PERIOD_FLAG] = in_period_flags(frame[FLIGHTS.time_column])
        for column, (table, key) in FLIGHTS.references.items():
            allowed = pd.read_parquet(inputs / f"{table}.parquet", columns=[key])[key]
            frame[REFERENCE_FLAG.format(column=column)] = frame[column].isna() | frame[column].isin(allowed)
        failed = failed_checks_by_row(pandas_flights_schema(), frame)
        frame = frame.drop(columns=list(FLIGHTS.flags))
        quarantine = frame.loc[failed.index].assign(failed_checks=failed.to_numpy())
        frame = frame.drop(index=failed.index)
        output.mkdir(parents=True, exist_ok=True)
        quarantine.to_parquet(output / "flights_quarantine.parquet")
        frame.to_parquet(output / "clean_flights.parquet")

    with timed(seconds, "features"):
        features = pandas_features(frame, inputs, FEATURE_PARAMS)
        features.to_parquet(output / "flight_features.parquet")

    fingerprint = (
        len(features),
        features["is_delayed"].sum(),
        features["is_cancelled"].sum(),
        features["temp"].count(),
        features["plane_age"].sum(),
        features["days_to_holiday"].sum(),
        features["carrier_delay_rate"].sum(),
        features["route_delay_rate"].sum(),
        features["origin_hour_delay_rate"].sum(),
    )
    return {
        "seconds": seconds,
        "quarantined": len(quarantine),
        "fingerprint": dict(zip(FINGERPRINT, (float(value) for value in fingerprint), strict=True)),
    }


def failed_checks_by_row(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.Series:
    """The checks each invalid row failed, as ``column:check; ...`` (the platform's text), by row index."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].isna().any():
            raise  # a failure with no row: the file itself is wrong
        row_check = cases["schema_context"] == "DataFrameSchema"
        column = cases["column"].mask(row_check, schema.name)
        check = cases["check"]
        # pandera-pandas names an eq check by its value (equal_to(True)): the flags get the platform's names.
        for flag, (flag_column, flag_check) in FLIGHTS.flags.items():
            is_flag = (cases["column"] == flag) & ~row_check
            column, check = column.mask(is_flag, flag_column), check.mask(is_flag, flag_check)
        failed = column + ":" + check
        return failed.groupby(cases["index"]).agg(lambda checks: "; ".join(sorted(set(checks))))
    return pd.Series(dtype=str)


def duplicate_flags(frame: pd.DataFrame, key: list[str]) -> pd.Series:
    """True on every repeat of a natural key; ties broken on every column, as the platform breaks them."""
    flags = frame.duplicated(key, keep=False)
    repeated = frame[flags].sort_values(list(frame.columns), na_position="last", kind="stable")
    flags[repeated.index] = repeated.duplicated(key, keep="first")
    return flags


def in_period_flags(time_hour: pd.Series) -> pd.Series:
    """True where a (UTC) ``time_hour`` falls in ``MONTH`` in the source's zone, as the platform's SQL tells it."""
    local = time_hour.dt.tz_localize("UTC").dt.tz_convert(TIMEZONE)
    year, month = (int(part) for part in MONTH.split("-"))
    return ((local.dt.year == year) & (local.dt.month == month)).fillna(False).astype(bool)


def us_federal_holidays(year: int) -> list[dt.date]:
    """The US federal holidays of one year, as the feature SQL lists them (not shifted to observed days)."""

    def nth_weekday(month: int, weekday: int, n: int) -> dt.date:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))

    def last_weekday(month: int, weekday: int) -> dt.date:
        last = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
        return last - dt.timedelta(days=(last.weekday() - weekday) % 7)

    monday, thursday = 0, 3
    return [
        dt.date(year, 1, 1),
        nth_weekday(1, monday, 3),  # Martin Luther King Jr. Day
        nth_weekday(2, monday, 3),  # Presidents' Day
        last_weekday(5, monday),  # Memorial Day
        dt.date(year, 7, 4),
        nth_weekday(9, monday, 1),  # Labor Day
        nth_weekday(10, monday, 2),  # Columbus Day
        dt.date(year, 11, 11),
        nth_weekday(11, thursday, 4),  # Thanksgiving
        dt.date(year, 12, 25),
    ]


def pandas_features(flights: pd.DataFrame, inputs: Path, params: dict) -> pd.DataFrame:
    """The flights dataset's feature SQL (src/mlplatform/defs/flights/features.sql), in pandas."""
    k, threshold = params["smoothing_flights"], params["delay_threshold_minutes"]
    history_columns = ["carrier", "origin", "dest", "hour", "dep_delay", PERIOD_COLUMN]
    history = pd.read_parquet(inputs / "history.parquet", columns=history_columns)
    in_window = history[PERIOD_COLUMN].isin(history_periods(DATASET, MONTH, FEATURES.lookback_periods))
    history = history[in_window & history["dep_delay"].notna()]
    history = history.assign(delayed=(history["dep_delay"] > threshold).astype(float))
    prior = history["delayed"].mean()

    def rate(keys: list[str], name: str) -> pd.DataFrame:
        grouped = history.groupby(keys).agg(flights=("delayed", "size"), delayed=("delayed", "sum")).reset_index()
        return grouped.assign(**{name: (grouped["delayed"] + k * prior) / (grouped["flights"] + k)})[[*keys, name]]

    flight_date = pd.to_datetime(flights[["year", "month", "day"]].astype("int64"))
    year = int(MONTH[:4])
    holidays = {day for y in (year - 1, year, year + 1) for day in us_federal_holidays(y)}
    holiday_days = np.array(sorted(holidays), dtype="datetime64[D]")
    dates = flight_date.drop_duplicates().to_numpy().astype("datetime64[D]")
    nearest = np.abs(dates[:, None] - holiday_days[None, :]).min(axis=1).astype(int)
    days_to_holiday = flight_date.map(pd.Series(nearest, index=pd.to_datetime(dates)))

    planes = pd.read_parquet(inputs / "planes.parquet", columns=["tailnum", "year"])
    planes = planes.rename(columns={"year": "plane_year"}).astype({"plane_year": "Int64"})
    weather = pd.read_parquet(inputs / "weather.parquet", columns=["origin", "time_hour", *WEATHER_COLUMNS])
    weather["time_hour"] = weather["time_hour"].dt.tz_convert(None)

    used = [*KEY_COLUMNS, "hour", "distance", "dest", "tailnum", "time_hour", "dep_time", "dep_delay"]
    features = flights[used].assign(
        weekday=flight_date.dt.dayofweek + 1,
        is_holiday=days_to_holiday == 0,
        days_to_holiday=days_to_holiday,
    )
    features = features.merge(planes, on="tailnum", how="left")
    features = features.merge(weather, on=["origin", "time_hour"], how="left")
    features = features.merge(rate(["carrier"], "carrier_delay_rate"), on="carrier", how="left")
    features = features.merge(rate(["origin", "dest"], "route_delay_rate"), on=["origin", "dest"], how="left")
    features = features.merge(rate(["origin", "hour"], "origin_hour_delay_rate"), on=["origin", "hour"], how="left")
    for name in ("carrier_delay_rate", "route_delay_rate", "origin_hour_delay_rate"):
        features[name] = features[name].fillna(prior)  # no history: (0 + k * prior) / (0 + k)
    features = features.assign(
        sched_hour=features["hour"],
        plane_age=features["year"] - features["plane_year"],
        is_cancelled=features["dep_time"].isna(),
        is_delayed=features["dep_delay"] > threshold,
        **{PERIOD_COLUMN: MONTH},
    )
    columns = [
        *KEY_COLUMNS, "sched_hour", "weekday", "is_holiday", "days_to_holiday", "distance", "dest", "plane_age",
        *WEATHER_COLUMNS, "carrier_delay_rate", "route_delay_rate", "origin_hour_delay_rate", "is_cancelled",
        "is_delayed", PERIOD_COLUMN,
    ]  # fmt: skip
    return features[columns].sort_values(list(KEY_COLUMNS), ignore_index=True)


def measure(pipeline: str, workdir: Path, rows: int, batch_rows: int, timeout: int) -> dict:
    """Run one pipeline in a fresh interpreter: its figures, or why it did not finish."""
    run = workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    if pipeline == "mlplatform":
        shutil.copyfile(workdir / "prepared.duckdb", run / "mlplatform.duckdb")
    command = [sys.executable, __file__, "--child", pipeline, "--workdir", str(workdir)]
    command += ["--rows", str(rows), "--batch-rows", str(batch_rows)]
    stdout, stderr = workdir / f"{pipeline}.stdout", workdir / f"{pipeline}.stderr"
    start, busy = time.monotonic(), machine_busy_seconds()
    peak = 0.0  # sampled here too, for a run that is killed before it can report its own
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        while process.poll() is None and time.monotonic() - start < timeout:
            peak = max(peak, peak_rss_mb(str(process.pid)))
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
    elapsed = time.monotonic() - start
    if process.returncode != 0:
        if elapsed >= timeout:
            reason = f"stopped at the {timeout} s time limit"
        elif process.returncode == -9:
            reason = f"killed after {elapsed:.0f} s (out of memory?)"
        else:
            last = (stderr.read_text().strip().splitlines() or [""])[-1]
            reason = f"exit status {process.returncode} after {elapsed:.0f} s: {last}"
        return {"error": reason, "peak_rss_mb": peak}
    result = json.loads(stdout.read_text().strip().splitlines()[-1])
    result["seconds"]["total"] = sum(result["seconds"].values())
    result["rows_per_second"] = rows / result["seconds"]["total"]
    # Whatever else ran meanwhile took cores from the pipeline: a figure to judge the run's noise by.
    result["other_cpu_seconds"] = max(0.0, machine_busy_seconds() - busy - result["cpu_seconds"])
    return result


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (every core together)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: str = "self") -> float:
    """A process's peak resident memory since it started (VmHWM); 0 once it has exited.

    Not ``ru_maxrss``: on Linux that carries over the spawning parent's peak through fork and exec.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)


# --- Report ----------------------------------------------------------------------------------------------


def results_table(rows: int, results: dict[str, dict]) -> str:
    """A Markdown table of both pipelines' figures; "-" where a pipeline did not finish."""
    figures = [
        ("rows", lambda r: f"{rows:,}"),
        *((f"{stage} (s)", lambda r, s=stage: f"{r['seconds'][s]:.1f}") for stage in (*STAGES, "total")),
        ("rows/s", lambda r: f"{r['rows_per_second']:,.0f}"),
        ("CPU time, user + system (s)", lambda r: f"{r['cpu_seconds']:.1f}"),
        ("CPU time of other processes meanwhile (s)", lambda r: f"{r['other_cpu_seconds']:.1f}"),
        ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:,.0f}"),
        ("RSS after imports (MB)", lambda r: f"{r['imports_rss_mb']:,.0f}"),
        ("quarantined rows", lambda r: f"{r['quarantined']:,}"),
        *((name, lambda r, n=name: number(r["fingerprint"][n])) for name in FINGERPRINT),
    ]
    lines = ["| | mlplatform (DuckDB + pandera-polars) | pandas + pandera-pandas |", "|---|---:|---:|"]
    compared = [results[name] for name in COMPARED]
    for label, figure in figures:
        values = [figure(r) if "error" not in r or label == "rows" else "-" for r in compared]
        lines.append(f"| {label} | {' | '.join(values)} |")
    lines += [
        f"\n{name} did not finish: {r['error']} (peak RSS until then at least {r['peak_rss_mb']:,.0f} MB)."
        for name, r in results.items()
        if "error" in r
    ]
    return "\n".join(lines)


def number(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.3f}"


def comparison(results: dict[str, dict]) -> list[str]:
    platform_result, pandas_result = results["mlplatform"], results["pandas"]
    lines = []
    if "error" not in platform_result:
        speed = platform_result["rows_per_second"]
        peak = platform_result["peak_rss_mb"]
        lines.append(
            f"- Target at least {TARGET_ROWS_PER_SECOND:,} rows/s end to end: "
            f"{'met' if speed >= TARGET_ROWS_PER_SECOND else 'not met'} ({speed:,.0f} rows/s)."
        )
        lines.append(
            f"- Target peak memory at most {TARGET_PEAK_MB / 1024:.0f} GB: "
            f"{'met' if peak <= TARGET_PEAK_MB else 'not met'} ({peak:,.0f} MB)."
        )
    if "error" not in platform_result and "error" not in pandas_result:
        speed = platform_result["rows_per_second"] / pandas_result["rows_per_second"]
        memory = platform_result["peak_rss_mb"] / pandas_result["peak_rss_mb"]
        lines.append(f"- mlplatform / pandas: {speed:.2f}x the throughput, {memory:.2f}x the peak memory.")
        lines.append(
            f"- Outputs {'match' if outputs_match(platform_result, pandas_result) else 'DIFFER'}: quarantined rows "
            "and the features' fingerprint (row, label, cancellation and weather counts, sums of plane age, "
            "days to holiday and every rate)."
        )
    floor = results[FLOOR]
    if "error" not in platform_result and "error" not in floor:
        lines.append(
            f"- Lower bound, DuckDB alone reading the landed file and writing one table: "
            f"{floor['seconds']['total']:.1f} s ({floor['rows_per_second']:,.0f} rows/s, peak RSS "
            f"{floor['peak_rss_mb']:,.0f} MB); mlplatform takes "
            f"{platform_result['seconds']['total'] / floor['seconds']['total']:.1f}x that time."
        )
    return lines


def outputs_match(a: dict, b: dict) -> bool:
    return a["quarantined"] == b["quarantined"] and all(
        math.isclose(a["fingerprint"][name], b["fingerprint"][name], rel_tol=1e-9) for name in FINGERPRINT
    )


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    versions = {name: metadata.version(name) for name in ("duckdb", "polars", "pandera", "pandas", "pyarrow")}
    return {
        "CPU": model or platform.processor(),
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "RAM": f"{total_kb / 1024**2:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        **versions,
        "load average before the run (1, 5, 15 min)": load_average(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def command_line() -> str:
    def shown(path: str) -> str:
        absolute = Path(path).absolute()
        return str(absolute.relative_to(REPO)) if absolute.is_relative_to(REPO) else path

    return shlex.join([shown(sys.executable), shown(sys.argv[0]), *sys.argv[1:]])


def section(rows: int, batch_rows: int, results: dict[str, dict], environment: dict[str, str]) -> str:
    environment_rows = "\n".join(f"| {name} | {value} |" for name, value in environment.items())
    return f"""## {SECTION}

One monthly partition (2013-07) of flights from the raw landing file (Parquet) to the flights dataset's
`features` table (its feature SQL, `src/mlplatform/defs/flights/features.sql`), scaled
to {rows:,} rows by resampling the real 2013 flights in DuckDB SQL: each real row repeated about
{rows / 336_776:.0f} times, the copies spread over the month's days and flight numbers so that natural keys
stay unique, `time_hour` following the new day, every other column its real value. The history behind the
delay rates (the real 2013-01..2013-06 flights), the month's weather and the reference tables are real and
loaded beforehand (not timed).

- **mlplatform**: `load_raw_partition` -> `split_partition` (pandera-polars, {batch_rows:,}-row Arrow batches)
  -> `build_features`, each stage on its own DuckDB connection with `memory_limit` {DUCKDB_MEMORY_LIMIT}, as the
  Dagster assets run them, on a copy of the prepared warehouse file.
- **pandas**: `read_parquet` with the contract's dtypes -> pandera-pandas validation (`lazy=True`; a schema with
  the flights contract's columns, nullability and checks; natural-key duplicates and rows outside the month
  flagged as the platform flags them), valid and invalid rows split on the failure cases' index and written to
  Parquet -> the same features in pandas (weather, planes and rate merges, holidays, labels) written to Parquet.

- **lower bound**: DuckDB alone, `CREATE TABLE ... AS SELECT * FROM read_parquet(<the landed file>)` into a
  new DuckDB file with the same `memory_limit`: what any pipeline that persists the month once must pay.

Each pipeline runs in a fresh subprocess. Peak RSS is that process's `VmHWM`, imports included (`ru_maxrss`
would carry over the parent's peak through fork and exec). Stage times are wall seconds; rows/s is rows /
total. CPU time over total time shows how many of the cores a pipeline kept busy; the CPU time other processes
used during a run (from `/proc/stat`) shows how quiet the machine was.

Command (from the repository root):

```
{command_line()}
```

{results_table(rows, results)}

{chr(10).join(comparison(results))}

Machine:

| | |
|---|---|
{environment_rows}
"""


# --- Command line ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the scaled partition (default 10M)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="split_partition's batch size")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds before a pipeline's run is stopped")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOCS.relative_to(REPO)}")
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace) -> None:
    imports_rss_mb = peak_rss_mb()
    scaled = args.workdir / "scaled" / f"flights-{MONTH}-{args.rows}.parquet"
    if args.child == "mlplatform":
        result = run_mlplatform(args.workdir, scaled, args.batch_rows)
    elif args.child == FLOOR:
        result = run_floor(args.workdir, scaled)
    else:
        result = run_pandas(args.workdir, scaled)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result |= {"peak_rss_mb": peak_rss_mb(), "imports_rss_mb": imports_rss_mb}
    print(json.dumps(result | {"cpu_seconds": usage.ru_utime + usage.ru_stime}))


def benchmark(args: argparse.Namespace, workdir: Path) -> None:
    environment = machine()
    check_schema_parity()
    start = time.perf_counter()
    prepare(workdir)
    build_scaled_partition(workdir, args.rows)
    print(f"setup: {time.perf_counter() - start:.1f} s in {workdir}", file=sys.stderr)
    results = {}
    for pipeline in PIPELINES:
        print(f"running {pipeline} on {args.rows:,} rows", file=sys.stderr)
        results[pipeline] = measure(pipeline, workdir, args.rows, args.batch_rows, args.timeout)
    environment["load average after the run (1, 5, 15 min)"] = load_average()
    print(results_table(args.rows, results))
    print("\n".join(comparison(results)))
    if args.write_docs:
        write_section(SECTION, section(args.rows, args.batch_rows, results, environment))
        print(f"wrote {DOCS}", file=sys.stderr)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
    elif args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        benchmark(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="pipeline-throughput-") as scratch:
            benchmark(args, Path(scratch))


if __name__ == "__main__":
    main()
