"""Split one raw partition into clean rows and quarantined rows, validating in bounded Arrow batches.

Rows stream out of DuckDB as Arrow record batches, are validated by the contract's pandera (polars)
schema, and go back into DuckDB as Arrow: memory stays bounded by the batch size, whatever the period's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandera.errors
import polars as pl

from mlplatform.data.contracts import DUPLICATE_FLAG, IN_PERIOD_FLAG, Contract
from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.sql import identifier
from mlplatform.data.warehouse import (
    FAILED_CHECKS_COLUMN,
    ensure_tables,
    partition_row_count,
    transaction,
)
from mlplatform.datasets.dataset import PERIOD_COLUMN, Dataset, clean_table, period_sql, quarantine_table, raw_table

# Only failing rows come back from a batch, so 1M-row batches keep a 10M-row period at 1.4-1.6 GB peak
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
    con: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    contract: Contract,
    period: str,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> SplitCounts:
    """Replace ``period`` (a period) of the clean and quarantine tables with the validated raw rows, atomically.

    Batches come back from validation as the ids (DuckDB ``rowid``) and failed checks of invalid rows only;
    the rows themselves move inside DuckDB, so valid rows never make a second trip through Python.
    """
    schema = contract.schema()
    raw, clean, quarantine = (dataset.table(name(contract.name)) for name in (raw_table, clean_table, quarantine_table))
    in_period = f"{PERIOD_COLUMN} = $period"
    in_range = f"{period_sql(dataset, contract.name, 't.' + identifier(contract.time_column))} = $period"

    # The whole split, validation included, runs again on a conflict: the rowids it joins on are the snapshot's.
    def split() -> None:
        ensure_tables(con, dataset, contract)
        try:
            with transaction(con):
                query = rows_with_flags(contract, raw, in_period, in_range)
                rows = con.sql(query, params={"period": period})
                batches = rows.to_arrow_reader(batch_rows)
                failures = [
                    failed_checks_by_row(schema, pl.from_arrow(batch), contract.time_column) for batch in batches
                ]
                con.register("failed", pl.concat([_no_failures(), *failures]).to_arrow())
                for table in (clean, quarantine):
                    con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = $period", {"period": period})
                con.execute(
                    f"INSERT INTO {clean} SELECT * FROM {raw} AS r ANTI JOIN failed AS f ON r.rowid = f.{_ROW} "
                    f"WHERE {in_period}",
                    {"period": period},
                )
                con.execute(
                    f"INSERT INTO {quarantine} SELECT r.*, f.{FAILED_CHECKS_COLUMN} FROM {raw} AS r "
                    f"JOIN failed AS f ON r.rowid = f.{_ROW} WHERE {in_period}",
                    {"period": period},
                )
        finally:
            con.unregister("failed")

    retry_on_conflict(split)
    counts = [partition_row_count(con, table, period) for table in (raw, clean, quarantine)]
    return SplitCounts(*counts)


def rows_with_flags(contract: Contract, table: str, where: str = "true", in_period: str | None = None) -> str:
    """SQL selecting a table's contract columns, :data:`DUPLICATE_FLAG` set on every repeat of a natural key,
    :data:`IN_PERIOD_FLAG` (given ``in_period``, the SQL telling a row is in the partition's period), and
    each row's DuckDB ``rowid`` as ``_row``.

    Keys are counted with a hash aggregate first; only rows whose key repeats are ranked (on every column,
    so the same file always keeps the same copy). Ranking every row would sort the whole period.
    """
    key = ", ".join(identifier(name) for name in contract.natural_key)
    every_column = ", ".join(identifier(name) for name in contract.columns)
    # NULL-safe, so repeated rows with a missing key column are still flagged as duplicates.
    same_key = " AND ".join(
        f"r.{identifier(name)} IS NOT DISTINCT FROM t.{identifier(name)}" for name in contract.natural_key
    )
    rank = f"row_number() OVER (PARTITION BY {key} ORDER BY {every_column}) > 1"
    rest = f"t.rowid AS {_ROW}"
    if in_period:
        rest = f"coalesce({in_period}, false) AS {IN_PERIOD_FLAG}, {rest}"
    return f"""
        WITH repeated AS (SELECT {key} FROM {table} WHERE {where} GROUP BY ALL HAVING count(*) > 1)
        SELECT {every_column}, false AS {DUPLICATE_FLAG}, {rest}
        FROM {table} AS t ANTI JOIN repeated AS r ON {same_key} WHERE {where}
        UNION ALL
        SELECT {every_column}, {rank} AS {DUPLICATE_FLAG}, {rest}
        FROM {table} AS t SEMI JOIN repeated AS r ON {same_key} WHERE {where}
    """


def reference_violations(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract) -> pl.DataFrame:
    """The rows of a (small) reference table that break its contract: natural key and failed checks."""
    frame = pl.from_arrow(con.sql(rows_with_flags(contract, dataset.table(contract.name))).to_arrow_table())
    failures = failed_checks_by_row(contract.schema(), frame)
    return frame.join(failures, on=_ROW).select(*contract.natural_key, FAILED_CHECKS_COLUMN)


def failed_checks_by_row(schema, frame: pl.DataFrame, time_column: str | None = None) -> pl.DataFrame:
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
                .when(pl.col("column") == IN_PERIOD_FLAG)
                .then(pl.lit(f"{time_column}:in_period"))
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
