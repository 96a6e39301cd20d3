"""Scaffolding: a first dataset declaration (defs.yaml, contract.yaml, features.sql) inferred from a sample file.

Everything inferred is a guess from the sample (types, checks, grain, key, features, baseline); the files say so
and leave TODOs for what a sample cannot tell (why a column may be null, what the dataset is). The new folder is
loaded like any other before this returns, so a scaffold that the platform would reject is never left behind.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import yaml

from mlplatform.data.contracts import SQL_TYPES
from mlplatform.data.sql import COLUMN, NAME, identifier
from mlplatform.datasets.dataset import CONTRACT_FILE, DEFS_FILE, load_dataset
from mlplatform.datasets.periods import _FORMATS, GRAINS

FEATURES_FILE = "features.sql"
COMPONENT = "mlplatform.orchestration.component.DatasetComponent"
MAX_CATEGORIES = 20  # a string column with more distinct values is free text or an identifier, not a category
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_NUMERIC = ("BIGINT", "DOUBLE")
_KEY_TYPES = ("BIGINT", "VARCHAR", "DATE", "TIMESTAMP")  # a float or a flag never names a row


def scaffold_dataset(
    defs_dir: Path, name: str, sample: Path, time_column: str, label: str | None = None, grain: str | None = None
) -> Path:
    """Write ``defs_dir/name/`` declaring a dataset shaped like ``sample`` (CSV or Parquet); returns the folder."""
    folder, sample = Path(defs_dir) / name, Path(sample)
    if not re.fullmatch(NAME, name):
        raise ValueError(f"dataset name {name!r} must match {NAME} (lower case letters, digits, underscores)")
    if folder.exists():
        raise ValueError(f"{folder} already exists; choose another name or remove it first")
    if not sample.is_file():
        raise ValueError(f"sample file {sample} not found")
    if sample.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"sample {sample.name}: expected a .csv or .parquet file")
    if label is None:  # the declaration format requires a model label
        raise ValueError("a dataset declares the column its model predicts: pass --label <a 0/1 or boolean column>")
    if grain is not None and grain not in GRAINS:
        raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ values are cut into periods in UTC, as landing stores them
        files = _render(con, name, sample, time_column, label, grain)
    folder.mkdir(parents=True)
    try:
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
        load_dataset(folder)
    except Exception:
        shutil.rmtree(folder)
        raise
    return folder


def _render(con, name: str, sample: Path, time_column: str, label: str, grain: str | None) -> dict[str, str]:
    """The three files' texts, from one profile of the sample loaded into DuckDB."""
    csv = sample.suffix.lower() == ".csv"
    reader = "read_csv(?, nullstr = ['NA', ''])" if csv else "read_parquet(?)"
    con.execute(f"CREATE TABLE sample AS SELECT * FROM {reader}", [str(sample)])
    types = {column: _contract_type(column, t) for column, t, *_ in con.execute("DESCRIBE sample").fetchall()}
    odd = [column for column in types if not re.fullmatch(COLUMN, column)]
    if odd:
        raise ValueError(f"sample {sample.name}: column names must match {COLUMN}; rename {odd}")
    for role, column in (("time column", time_column), ("label", label)):
        if column not in types:
            raise ValueError(f"{role} {column!r} is not a column of {sample.name} (columns: {', '.join(types)})")
    rows, profile = _profile(con, types)
    if not rows:
        raise ValueError(f"sample {sample.name} has no rows")
    periods, period_keys = _periods(con, time_column, types[time_column], profile[time_column], grain)
    key = _natural_key(types, profile, rows)
    keywords = {
        row[0]
        for row in con.execute(
            "FROM duckdb_keywords() SELECT keyword_name WHERE keyword_category <> 'unreserved'"
        ).fetchall()
    }
    sql_names = {c: identifier(c) if c.lower() in keywords else c for c in types}  # "order", "at": keywords
    label_sql, label_out = _label(label, types[label], profile[label], sql_names)
    identifier_key = key if len(key) == 1 else []  # a column naming rows carries no signal, nor a range
    excluded = {time_column, label, *identifier_key}
    categorical = [c for c, t in types.items() if c not in excluded and _is_category(t, profile[c])]
    numeric = [c for c, t in types.items() if c not in excluded and t in _NUMERIC]
    baseline = _baseline(con, numeric, label_sql, label)
    no_range = {time_column, *identifier_key}  # later periods bring later years and larger ids
    contract = {"tables": {name: {"natural_key": key, "columns": _columns(types, profile, rows, no_range)}}}
    landing: dict[str, Any] = {"format": "parquet"}
    if csv:  # the delimiter DuckDB sniffed; NA is how the platform writes a missing value (the sample may use '')
        delimiter = con.execute("SELECT Delimiter FROM sniff_csv(?)", [str(sample)]).fetchone()[0]
        landing = {"format": "csv", "delimiter": delimiter, "null_string": "NA"}
    attributes = {
        "name": name,
        "description": f"TODO: describe the {name} dataset: what one row is, where it comes from, who uses it.",
        "periods": periods,
        "landing": {**landing, "sources": {name: {"time_column": time_column}}},
        "features": {"sql": FEATURES_FILE, "key": key, "lookback_periods": 0},
        "predictor": {
            "name": name,
            "description": f"TODO: say what the model predicts (now: whether {label_sql}).",
            "label": label_out,
            "categorical": categorical,
            "numeric": numeric,
        },
        "training": {
            "target_period": period_keys[-1],
            "window_periods": 1,
            "time_order": [time_column, *(c for c in key if c != time_column)],
        },
        "evaluation": {"baseline": [baseline], "group_by": []},
    }
    note = f"# Inferred by scaffold_dataset from the sample {sample.name} ({rows} rows): review it, and every TODO.\n"
    selected = dict.fromkeys([*key, time_column, *categorical, *numeric])
    return {
        DEFS_FILE: note + _dump({"type": COMPONENT, "attributes": attributes}),
        CONTRACT_FILE: note + _dump(contract),
        FEATURES_FILE: _FEATURES_SQL.format(
            name=name,
            sample=sample.name,
            label_sql=label_sql,
            label_out=label_out,
            columns=",\n    ".join(sql_names[c] for c in selected),
        ),
    }


def _columns(types: dict[str, str], profile: dict[str, dict], rows: int, no_range: set[str]) -> dict[str, dict]:
    """contract.yaml's columns: each type, the checks the sample passes, and a TODO where nulls were seen."""
    columns = {}
    for column, sql_type in types.items():
        stats, spec, checks = profile[column], {"type": sql_type}, {}
        if sql_type in _NUMERIC and stats["min"] is not None and column not in no_range:
            cast = int if sql_type == "BIGINT" else float  # DECIMAL arrives as Decimal, which YAML cannot write
            checks["in_range"] = [cast(stats["min"]), cast(stats["max"])]
        if sql_type == "VARCHAR" and _is_category(sql_type, stats):
            checks["isin"] = stats["values"]
        if checks:
            spec["checks"] = checks
        if stats["nonnull"] < rows:  # allow a little more than seen: a sample is one draw
            spec["null_reason"] = f"TODO: say why {column} may be null"
            spec["max_null_share"] = min(1.0, math.ceil(120 * (1 - stats["nonnull"] / rows)) / 100)
        columns[column] = spec
    return columns


_FEATURES_SQL = """\
-- {name} features: one row per row of the period (scaffolded from {sample}; a starting point to edit).
--
-- The platform runs this for one period at a time and lets it see only:
--   current_{name}   the period's clean rows
--   history_{name}   clean rows of the features.lookback_periods periods before it (0 until defs.yaml raises it)
-- Parameters: $period (the period's key), $period_start (its first day), $period_end (the first day after it),
-- and any features.params of defs.yaml. The platform adds the `period` column: do not select one.
--
-- Label: {label_out} is true when {label_sql} (NULL when the label is unknown: no example either way).
SELECT
    {columns},
    ({label_sql}) AS {label_out}
FROM current_{name}
"""


def _contract_type(column: str, duckdb_type: str) -> str:
    t = duckdb_type.upper()
    t = (
        "BIGINT"
        if t in _INTEGERS
        else "DOUBLE"
        if t in ("FLOAT", "REAL") or t.startswith("DECIMAL")
        else "TIMESTAMP"
        if t.startswith("TIMESTAMP")
        else t
    )  # TIMESTAMPTZ, _MS, _NS: a (UTC) TIMESTAMP
    if t not in SQL_TYPES:
        raise ValueError(f"column {column!r} is {duckdb_type}, which no contract type holds; convert it in the sample")
    return t


def _profile(con, types: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """Per column, in one scan: non-null and distinct counts, min/max of numbers, values of small string sets."""
    parts = ["count(*)"]
    for column, sql_type in types.items():
        q = identifier(column)
        low_high = f"min({q}), 'max': max({q})" if sql_type in _NUMERIC else "NULL, 'max': NULL"
        values = "NULL"
        if sql_type == "VARCHAR":
            values = (
                f"CASE WHEN count(DISTINCT {q}) <= {MAX_CATEGORIES} "
                f"THEN list_sort(list(DISTINCT {q}) FILTER (WHERE {q} IS NOT NULL)) END"
            )
        parts.append(
            f"{{'nonnull': count({q}), 'distinct': count(DISTINCT {q}), 'min': {low_high}, 'values': {values}}}"
        )
    rows, *stats = con.execute(f"SELECT {', '.join(parts)} FROM sample").fetchone()
    return rows, dict(zip(types, stats, strict=True))


def _is_category(sql_type: str, stats: dict[str, Any]) -> bool:
    """Few values, each seen more than once (a column of all-different strings names rows; it is no category)."""
    if sql_type == "BOOLEAN":
        return True
    return sql_type == "VARCHAR" and stats["distinct"] <= MAX_CATEGORIES and stats["distinct"] < stats["nonnull"]


def _periods(con, column: str, sql_type: str, stats: dict, grain: str | None) -> tuple[dict[str, str], list[str]]:
    q = identifier(column)
    if sql_type == "BIGINT":  # a year column: only whole years can be cut from it
        low, high = stats["min"], stats["max"]
        if low is None or low < 1900 or high > 2100 or grain not in (None, "yearly"):
            raise ValueError(f"time column {column!r} is an integer: it must hold years (1900..2100), grain yearly")
        grain, key_sql = "yearly", f"CAST({q} AS VARCHAR)"
    elif sql_type in ("DATE", "TIMESTAMP"):
        if grain is None:  # the finest grain that still gives a sample of this span a handful of periods
            span = con.execute(f"SELECT date_diff('day', min({q}), max({q})) FROM sample").fetchone()[0] or 0
            grain = "daily" if span < 62 else "monthly" if span < 3 * 366 else "yearly"
        key_sql = f"strftime({q}, '{_FORMATS[grain]}')"  # Periods.fmt, before there is a start for a Periods
    else:
        raise ValueError(f"time column {column!r} is {sql_type}: it must be a DATE, a TIMESTAMP or an integer year")
    # The first two periods: the first starts the periods, the second (if any) is held out for evaluation.
    keys = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT {key_sql} AS k FROM sample WHERE {q} IS NOT NULL ORDER BY k LIMIT 2"
        ).fetchall()
    ]
    if not keys:
        raise ValueError(f"time column {column!r} has no values in the sample")
    return {"grain": grain, "start": keys[0]}, keys


def _natural_key(types: dict[str, str], profile: dict[str, dict], rows: int) -> list[str]:
    """``id`` when it names rows, else the first column that does, else the whole row."""
    unique = [
        c for c, t in types.items() if t in _KEY_TYPES and rows == profile[c]["nonnull"] == profile[c]["distinct"]
    ]
    if "id" in unique:
        return ["id"]
    return unique[:1] or list(types)


def _label(label: str, sql_type: str, stats: dict, sql_names: dict[str, str]) -> tuple[str, str]:
    """The SQL making a BOOLEAN of the label column, and a name for it that no sample column has."""
    q = sql_names[label]
    if sql_type == "BOOLEAN":
        expression = q
    elif sql_type in _NUMERIC and stats["distinct"] <= 2 and {stats["min"], stats["max"]} <= {0, 1}:
        expression = f"{q} = 1"
    else:
        raise ValueError(
            f"label {label!r} is {sql_type} and not 0/1: the scaffold turns only a 0/1 or boolean column into the "
            f"model's label; add one to the sample (or write the label expression in {FEATURES_FILE} yourself)"
        )
    names = [f"{label}_flag", f"{label}_label"] if label.startswith("is_") else [f"is_{label}", f"{label}_flag"]
    free = [n for n in names if n not in sql_names and re.fullmatch(COLUMN, n)]
    if not free:
        raise ValueError(f"label {label!r}: the sample already has columns named {names}; rename the label column")
    return expression, free[0]


def _baseline(con, numeric: list[str], label_sql: str, label: str) -> str:
    """The numeric feature that rises most with the label in the sample: the score a model must beat."""
    if numeric:
        corrs = con.execute(
            "SELECT "
            + ", ".join(f"corr({identifier(c)}::DOUBLE, ({label_sql})::DOUBLE)" for c in numeric)
            + " FROM sample"
        ).fetchone()
        scored = [(r, c) for r, c in zip(corrs, numeric, strict=True) if r is not None and not math.isnan(r) and r > 0]
        if scored:
            return max(scored)[1]
    raise ValueError(
        f"no numeric feature column rises with {label!r} in the sample, and evaluation.baseline needs one: add "
        f"a numeric column that does (negate one that falls with it) to the sample, or to {FEATURES_FILE} later"
    )


def _dump(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
