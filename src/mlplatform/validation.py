"""Split one raw partition into clean rows and quarantined rows, validating in bounded Arrow batches.

Rows stream out of DuckDB as Arrow record batches, are validated by the contract's pandera (polars)
schema, and go back into DuckDB as Arrow: memory stays bounded by the batch size, whatever the month's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandera.errors
import polars as pl

from mlplatform.contracts import DUPLICATE_FLAG, Contract
from mlplatform.warehouse import (
    FAILED_CHECKS_COLUMN,
    PARTITION_COLUMN,
    clean_table,
    ensure_tables,
    partition_row_count,
    quarantine_table,
    raw_table,
    transaction,
)

# Only failing rows come back from a batch, so 1M-row batches keep a 10M-row month at 1.4-1.6 GB peak
# (docs/benchmarks.md).
DEFAULT_BATCH_ROWS = 1_000_000
_ROW = "_row"
_POSITION = "_position"


@dataclass(frozen=True)
class SplitCounts:
    raw: int
    clean: int
    quarantined: int


def split_partition(
    con: duckdb.DuckDBPyConnection, contract: Contract, month: str, batch_rows: int = DEFAULT_BATCH_ROWS
) -> SplitCounts:
    """Replace ``month`` of the clean and quarantine tables with the validated raw rows, atomically.

    Batches come back from validation as the ids (DuckDB ``rowid``) and failed checks of invalid rows only;
    the rows themselves move inside DuckDB, so valid rows never make a second trip through Python.
    """
    ensure_tables(con, contract)
    year, month_number = (int(part) for part in month.split("-"))
    schema = contract.schema(year, month_number)
    raw, clean, quarantine = raw_table(contract), clean_table(contract), quarantine_table(contract)
    in_month = f"{PARTITION_COLUMN} = $month"
    try:
        with transaction(con):
            rows = con.sql(rows_with_duplicate_flag(contract, raw, in_month), params={"month": month})
            batches = rows.to_arrow_reader(batch_rows)
            failures = [failed_checks_by_row(schema, pl.from_arrow(batch)) for batch in batches]
            con.register("failed", pl.concat([_no_failures(), *failures]).to_arrow())
            for table in (clean, quarantine):
                con.execute(f"DELETE FROM {table} WHERE {PARTITION_COLUMN} = $month", {"month": month})
            con.execute(
                f"INSERT INTO {clean} SELECT * FROM {raw} AS r ANTI JOIN failed AS f ON r.rowid = f.{_ROW} "
                f"WHERE {in_month}",
                {"month": month},
            )
            con.execute(
                f"INSERT INTO {quarantine} SELECT r.*, f.{FAILED_CHECKS_COLUMN} FROM {raw} AS r "
                f"JOIN failed AS f ON r.rowid = f.{_ROW} WHERE {in_month}",
                {"month": month},
            )
    finally:
        con.unregister("failed")
    counts = [partition_row_count(con, table, month) for table in (raw, clean, quarantine)]
    return SplitCounts(*counts)


def rows_with_duplicate_flag(contract: Contract, table: str, where: str = "true") -> str:
    """SQL selecting a table's contract columns, :data:`DUPLICATE_FLAG` set on every repeat of a natural key,
    and each row's DuckDB ``rowid`` as ``_row``.

    Keys are counted with a hash aggregate first; only rows whose key repeats are ranked (on every column,
    so the same file always keeps the same copy). Ranking every row would sort the whole month.
    """
    key = ", ".join(f'"{name}"' for name in contract.natural_key)
    every_column = ", ".join(f'"{name}"' for name in contract.columns)
    # NULL-safe, so repeated rows with a missing key column are still flagged as duplicates.
    same_key = " AND ".join(f'r."{name}" IS NOT DISTINCT FROM t."{name}"' for name in contract.natural_key)
    rank = f"row_number() OVER (PARTITION BY {key} ORDER BY {every_column}) > 1"
    rest = f"t.rowid AS {_ROW}"
    return f"""
        WITH repeated AS (SELECT {key} FROM {table} WHERE {where} GROUP BY ALL HAVING count(*) > 1)
        SELECT {every_column}, false AS {DUPLICATE_FLAG}, {rest}
        FROM {table} AS t ANTI JOIN repeated AS r ON {same_key} WHERE {where}
        UNION ALL
        SELECT {every_column}, {rank} AS {DUPLICATE_FLAG}, {rest}
        FROM {table} AS t SEMI JOIN repeated AS r ON {same_key} WHERE {where}
    """


def reference_violations(con: duckdb.DuckDBPyConnection, contract: Contract) -> pl.DataFrame:
    """The rows of a (small) reference table that break its contract: natural key and failed checks."""
    frame = pl.from_arrow(con.sql(rows_with_duplicate_flag(contract, contract.name)).to_arrow_table())
    failures = failed_checks_by_row(contract.schema(), frame)
    return frame.join(failures, on=_ROW).select(*contract.natural_key, FAILED_CHECKS_COLUMN)


def failed_checks_by_row(schema, frame: pl.DataFrame) -> pl.DataFrame:
    """One row per invalid row of ``frame``: its ``_row`` id and the checks it failed, as ``column:check; ...``."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].null_count():
            # A failure with no row (a missing column, a wrong type) means the raw table itself is wrong.
            raise
        by_position = (
            cases.select(
                pl.col("index").cast(pl.UInt32).alias(_POSITION),
                pl.when(pl.col("column") == DUPLICATE_FLAG)
                .then(pl.lit("natural_key:duplicate"))
                .otherwise(pl.col("column") + ":" + pl.col("check"))
                .alias(FAILED_CHECKS_COLUMN),
            )
            .unique()
            .sort(_POSITION, FAILED_CHECKS_COLUMN)
            .group_by(_POSITION, maintain_order=True)
            .agg(pl.col(FAILED_CHECKS_COLUMN).str.join("; "))
        )
        ids = frame.select(pl.col(_ROW).cast(pl.Int64)).with_row_index(_POSITION)
        return by_position.join(ids, on=_POSITION).select(_ROW, FAILED_CHECKS_COLUMN)
    return _no_failures()


def _no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema={_ROW: pl.Int64, FAILED_CHECKS_COLUMN: pl.String})
