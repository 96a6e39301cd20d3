"""Split one raw partition into clean rows and quarantined rows, validating in bounded Arrow batches.

Rows stream out of DuckDB as Arrow record batches, are validated by the contract's pandera (polars)
schema, and go back into DuckDB as Arrow: memory stays bounded by the batch size, whatever the period's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandera.errors
import polars as pl

from mlplatform.data.contracts import DUPLICATE_FLAG, IN_PERIOD_FLAG, REFERENCE_FLAG, Contract
from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.parsing import LINE_COLUMN, LOAD_FAILURES_COLUMN
from mlplatform.data.sql import identifier, sql_string
from mlplatform.data.warehouse import (
    FAILED_CHECKS_COLUMN,
    FAILURES_COLUMN,
    SOURCE_COLUMN,
    ensure_tables,
    partition_row_count,
    transaction,
)
from mlplatform.datasets.dataset import (
    PERIOD_COLUMN,
    Dataset,
    clean_table,
    in_period_sql,
    quarantine_table,
    raw_table,
)

# Only failing rows come back from a batch, so 1M-row batches keep a 10M-row period at 1.4-1.6 GB peak
# (docs/benchmarks.md).
DEFAULT_BATCH_ROWS = 1_000_000
_ROW = "_row"
_POSITION = "_position"


class MissingReferenceError(LookupError):
    """A contract checks a column against a reference table that is not loaded yet."""


@dataclass(frozen=True)
class SplitCounts:
    raw: int
    clean: int
    quarantined: int


def split_partition(
    con: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    contract: Contract,
    period: str,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> SplitCounts:
    """Replace ``period`` (a period) of the clean and quarantine tables with the validated raw rows, atomically.

    Raw rows that could not be read (``load_failures``) are quarantined as they are; the others are validated in
    batches, which come back as the ids (DuckDB ``rowid``) and failed checks of invalid rows only: the rows
    themselves move inside DuckDB, so valid rows never make a second trip through Python. Every quarantined row
    keeps its line, and each check it failed with the column and the raw value.
    """
    schema = contract.schema()
    raw, clean, quarantine = (dataset.table(name(contract.name)) for name in (raw_table, clean_table, quarantine_table))
    in_period = f"{PERIOD_COLUMN} = $period"
    readable = f"{in_period} AND {LOAD_FAILURES_COLUMN} IS NULL"
    in_range = in_period_sql(dataset, contract.name, "t." + identifier(contract.time_column), period)
    columns = ", ".join(identifier(name) for name in contract.columns)
    lineage = f"{PERIOD_COLUMN}, {SOURCE_COLUMN}"
    into_quarantine = f"{quarantine} ({columns}, {lineage}, {FAILED_CHECKS_COLUMN}, {LINE_COLUMN}, {FAILURES_COLUMN})"
    references = reference_sets(con, dataset, contract)

    # The whole split, validation included, runs again on a conflict: the rowids it joins on are the snapshot's.
    def split() -> None:
        ensure_tables(con, dataset, contract)
        try:
            with transaction(con):
                failures = [
                    failure_cases(schema, pl.from_arrow(batch), contract)
                    for query in rows_with_flags(contract, raw, readable, in_range, references)
                    # execute, not sql(): with parameters, DuckDB 1.5's relation API ran this ~30x slower.
                    for batch in con.execute(query, {"period": period}).to_arrow_reader(batch_rows)
                ]
                con.register("failed", pl.concat([_no_failures(), *failures]).to_arrow())
                for table in (clean, quarantine):
                    con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = $period", {"period": period})
                con.execute(
                    f"INSERT INTO {clean} SELECT {columns}, {lineage} FROM {raw} AS r "
                    f"ANTI JOIN failed AS f ON r.rowid = f.{_ROW} WHERE {readable}",
                    {"period": period},
                )
                con.execute(
                    f"INSERT INTO {into_quarantine} SELECT {columns}, {lineage}, q.{FAILED_CHECKS_COLUMN}, "
                    f"{LINE_COLUMN}, q.{FAILURES_COLUMN} FROM {raw} AS r JOIN ({_by_row(contract, raw)}) AS q "
                    f"ON r.rowid = q.{_ROW} WHERE {in_period}",
                    {"period": period},
                )
                checks = f"list_transform({LOAD_FAILURES_COLUMN}, f -> f.column_name || ':' || f.check_name)"
                con.execute(
                    f"INSERT INTO {into_quarantine} SELECT {columns}, {lineage}, "
                    f"array_to_string(list_sort({checks}), '; '), {LINE_COLUMN}, {LOAD_FAILURES_COLUMN} "
                    f"FROM {raw} WHERE {in_period} AND {LOAD_FAILURES_COLUMN} IS NOT NULL",
                    {"period": period},
                )
        finally:
            con.unregister("failed")

    retry_on_conflict(split)
    counts = [partition_row_count(con, table, period) for table in (raw, clean, quarantine)]
    return SplitCounts(*counts)


def _by_row(contract: Contract, raw: str) -> str:
    """SQL: per failed row, its failed checks as ``column:check; ...`` and as a list of (column, check, raw
    value); the raw value of a column's check is the column's value, of a duplicate the natural key's."""
    values = " ".join(
        f"WHEN {sql_string(name)} THEN CAST(r.{identifier(name)} AS VARCHAR)" for name in contract.columns
    )
    key = ", ".join(f"r.{identifier(name)}" for name in contract.natural_key)
    raw_value = f"CASE f.column_name {values} WHEN 'natural_key' THEN concat_ws(', ', {key}) END"
    named = "f.column_name || ':' || f.check_name"
    failure = f"{{'column_name': f.column_name, 'check_name': f.check_name, 'raw_value': {raw_value}}}"
    return (
        f"SELECT f.{_ROW}, string_agg({named}, '; ' ORDER BY {named}) AS {FAILED_CHECKS_COLUMN}, "
        f"list({failure} ORDER BY {named}) AS {FAILURES_COLUMN} "
        f"FROM failed AS f JOIN {raw} AS r ON r.rowid = f.{_ROW} GROUP BY f.{_ROW}"
    )


def reference_sets(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract) -> dict[str, str]:
    """Column -> a SELECT of the values its reference table allows; a :class:`MissingReferenceError` naming the
    job to run when that table is not loaded."""
    sets = {}
    for column, (table, key) in contract.references.items():
        try:
            con.execute(f"SELECT {identifier(key)} FROM {dataset.table(table)} LIMIT 0")
        except duckdb.CatalogException:
            raise MissingReferenceError(
                f"{dataset.name}.{contract.name}.{column} is checked against {table}.{key}, and the reference table "
                f"{dataset.name}.{table} is not loaded: run the {dataset.name}_reference_data job first"
            ) from None
        sets[column] = f"SELECT {identifier(key)} FROM {dataset.table(table)}"
    return sets


def rows_with_flags(
    contract: Contract,
    table: str,
    where: str = "true",
    in_period: str | None = None,
    references: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Two SELECTs (rows whose natural key is unique, then rows whose key repeats) of a table's contract
    columns, :data:`DUPLICATE_FLAG` set on every repeat of a natural key, :data:`IN_PERIOD_FLAG` (given
    ``in_period``, the SQL telling a row is in the partition's period), a :data:`REFERENCE_FLAG` for each
    column of ``references`` (column -> the SELECT of the values it may take) telling the value is there, and
    each row's DuckDB ``rowid`` as ``_row``.

    Keys are counted with a hash aggregate first; only rows whose key repeats are ranked (on every column,
    so the same file always keeps the same copy). Ranking every row would sort the whole period. The two are
    run one after the other: DuckDB 1.5.5 never finished their UNION ALL on a 10M-row period.
    """
    key = ", ".join(identifier(name) for name in contract.natural_key)
    every_column = ", ".join(identifier(name) for name in contract.columns)
    # NULL-safe, so repeated rows with a missing key column are still flagged as duplicates.
    same_key = " AND ".join(
        f"r.{identifier(name)} IS NOT DISTINCT FROM t.{identifier(name)}" for name in contract.natural_key
    )
    rank = f"row_number() OVER (PARTITION BY {key} ORDER BY {every_column}) > 1"
    rest = [f"t.rowid AS {_ROW}"]
    if in_period:
        rest.insert(0, f"coalesce({in_period}, false) AS {IN_PERIOD_FLAG}")
    for column, allowed in (references or {}).items():
        value = f"t.{identifier(column)}"
        flag = identifier(REFERENCE_FLAG.format(column=column))
        rest.insert(0, f"coalesce({value} IS NULL OR {value} IN ({allowed}), false) AS {flag}")
    repeated = f"(SELECT {key} FROM {table} WHERE {where} GROUP BY ALL HAVING count(*) > 1) AS r"
    return (
        f"SELECT {every_column}, false AS {DUPLICATE_FLAG}, {', '.join(rest)} "
        f"FROM {table} AS t ANTI JOIN {repeated} ON {same_key} WHERE {where}",
        f"SELECT {every_column}, {rank} AS {DUPLICATE_FLAG}, {', '.join(rest)} "
        f"FROM {table} AS t SEMI JOIN {repeated} ON {same_key} WHERE {where}",
    )


def reference_violations(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract) -> pl.DataFrame:
    """The rows of a (small) reference table that break its contract: natural key and failed checks."""
    queries = rows_with_flags(contract, dataset.table(contract.name))
    frame = pl.concat([pl.from_arrow(con.execute(query).to_arrow_table()) for query in queries])
    named = pl.col("column_name") + ":" + pl.col("check_name")
    by_row = (
        failure_cases(contract.schema(), frame, contract)
        .group_by(_ROW)
        .agg(named.sort().str.join("; ").alias(FAILED_CHECKS_COLUMN))
    )
    return frame.join(by_row, on=_ROW).sort(_ROW).select(*contract.natural_key, FAILED_CHECKS_COLUMN)


def failure_cases(schema, frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """One row per check an invalid row of ``frame`` failed: its ``_row`` id, ``column_name`` and ``check_name``.
    A flag computed in SQL is named after what it checks (``natural_key:duplicate``, ``time_hour:in_period``);
    a row check after the table (``flights:sched_dep_time_is_hour_minute``)."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].null_count():
            # A failure with no row (a missing column, a wrong type) means the raw table itself is wrong.
            raise
        flags = pl.DataFrame(
            [(flag, column, check) for flag, (column, check) in contract.flags.items()],
            schema={"column": pl.String, "flag_column": pl.String, "flag_check": pl.String},
            orient="row",
        )
        named = (
            cases.select(pl.col("index").cast(pl.UInt32).alias(_POSITION), "column", "check")
            .join(flags, on="column", how="left")
            .select(
                _POSITION,
                pl.coalesce("flag_column", "column").alias("column_name"),
                pl.coalesce("flag_check", "check").alias("check_name"),
            )
            .unique()
        )
        ids = frame.select(pl.col(_ROW).cast(pl.Int64)).with_row_index(_POSITION)
        return named.join(ids, on=_POSITION).select(_ROW, "column_name", "check_name")
    return _no_failures()


def _no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema={_ROW: pl.Int64, "column_name": pl.String, "check_name": pl.String})
