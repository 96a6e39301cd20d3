"""DuckDB tables of the platform and the SQL that loads landing files into them.

Each dataset has its own schema (``"flights"."raw_flights"``). Periodic tables carry a ``period`` column;
every write replaces one period inside a single transaction, so re-running a partition never duplicates
rows and a failed load leaves the table as it was. On a DuckLake (:mod:`mlplatform.data.lake`) two writers of one
table can conflict at commit; each write is then run again whole (:func:`~mlplatform.data.lake.retry_on_conflict`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from mlplatform.data.contracts import Contract
from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.landing import LandingFileError
from mlplatform.data.parsing import (
    FAILURES_TYPE,
    LINE_COLUMN,
    LOAD_FAILURES_COLUMN,
    add_rejected_lines,
    describe_failure,
    drop_rejects,
    file_rows,
    first_rejected_line,
    mixed_line_ends,
)
from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets.dataset import PERIOD_COLUMN, Dataset, clean_table, quarantine_table, raw_table

SOURCE_COLUMN = "source_file"
FAILED_CHECKS_COLUMN = "failed_checks"
FAILURES_COLUMN = "failures"  # each failed check of a quarantined row: column, check and the raw value


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything inside commits together or not at all.

    A conflict at COMMIT fails the whole transaction: to retry, run everything from BEGIN again, inside
    :func:`~mlplatform.data.lake.retry_on_conflict` (never the COMMIT alone).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        # A statement that failed may already have ended the transaction; the original error is the one to see.
        with suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def ensure_schema(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(dataset.name)}")


def ensure_tables(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract) -> None:
    """Create the raw, clean and quarantine tables of a source if they do not exist, and add the columns a
    warehouse written by an earlier version lacks (at the end, where a new table has them too)."""
    ensure_schema(con, dataset)
    columns = ", ".join(f"{identifier(name)} {sql_type}" for name, sql_type in contract.sql_types.items())
    lineage = f"{PERIOD_COLUMN} VARCHAR NOT NULL, {SOURCE_COLUMN} VARCHAR NOT NULL"
    raw, clean, quarantine = (dataset.table(name(contract.name)) for name in (raw_table, clean_table, quarantine_table))
    added = {
        raw: {LINE_COLUMN: "BIGINT", LOAD_FAILURES_COLUMN: FAILURES_TYPE},
        quarantine: {FAILED_CHECKS_COLUMN: "VARCHAR NOT NULL", LINE_COLUMN: "BIGINT", FAILURES_COLUMN: FAILURES_TYPE},
        clean: {},
    }
    for table, extra in added.items():
        definitions = "".join(f", {identifier(name)} {sql_type}" for name, sql_type in extra.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, {lineage}{definitions})")
        present = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
        for name, sql_type in extra.items():
            if name not in present:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {identifier(name)} {sql_type}")


def load_raw_partition(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, period: str, path: Path
) -> int:
    """Replace ``period`` of the raw table with every record of one landing file; returns the row count.

    A record that cannot be read whole is kept, with its line and its ``load_failures`` (see
    :mod:`mlplatform.data.parsing`), for validation to quarantine. A file wrong as a whole, or with no rows
    unless the dataset declares ``landing.empty_periods: allowed``, raises :class:`LandingFileError` and leaves
    the table untouched. A conflict with another writer is not the file's fault: the load runs again, and a
    conflict that outlasts the retries is raised as the ``duckdb.TransactionException`` it is.
    """
    table = dataset.table(raw_table(contract.name))
    columns = ", ".join(identifier(name) for name in contract.columns)

    def replace_period(source: str) -> None:
        con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = ?", [period])
        con.execute(
            f"INSERT INTO {table} SELECT {columns}, $period, $source_file, {LINE_COLUMN}, {LOAD_FAILURES_COLUMN} "
            f"FROM ({source})",
            {"period": period, "source_file": path.name},
        )
        add_rejected_lines(con, dataset, contract, table, period, path.name)
        if dataset.declaration.landing.empty_periods == "error" and not partition_row_count(con, table, period):
            raise LandingFileError(
                path,
                None,
                "the file holds no rows; expected at least one (a period may be empty only where the dataset "
                "declares landing.empty_periods: allowed)",
            )

    _load_file(con, dataset, contract, path, lambda: ensure_tables(con, dataset, contract), replace_period)
    return partition_row_count(con, table, period)


def load_reference(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, path: Path) -> int:
    """Replace the whole reference table ``contract.name`` with one landing file; returns the row count.

    Other tables are checked against a reference table, so it is loaded whole or not at all: a row that cannot
    be read, or a file with no rows, raises :class:`LandingFileError` naming the line and leaves it as it was.
    """
    table = dataset.table(contract.name)
    columns = ", ".join(identifier(name) for name in contract.columns)

    def replace_table(source: str) -> None:
        unread = con.execute(
            f"SELECT {LINE_COLUMN}, {LOAD_FAILURES_COLUMN}[1] FROM ({source}) WHERE {LOAD_FAILURES_COLUMN} IS NOT NULL "
            f"ORDER BY {LINE_COLUMN} LIMIT 1"
        ).fetchall()
        rejected = first_rejected_line(con, dataset, contract)
        # A kept row's number is exact up to the first rejected line.
        if rejected and (not unread or rejected[0] <= unread[0][0]):
            unread = [rejected]
        if unread:
            line, failure = unread[0]
            raise LandingFileError(path, line, f"{describe_failure(failure)}; expected the {contract.name} contract")
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM ({source})")
        if not con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
            raise LandingFileError(path, None, "the file holds no rows; expected the whole reference table")

    _load_file(con, dataset, contract, path, lambda: ensure_schema(con, dataset), replace_table)
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _load_file(
    con: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    contract: Contract,
    path: Path,
    prepare: Callable[[], None],
    write: Callable[[str], None],
) -> None:
    """``prepare()``, then ``write(<the file as a SELECT>)`` in one transaction, run again whole on a conflict.
    Any other DuckDB error reading the file is the file's: a :class:`LandingFileError` naming it."""

    def attempt() -> None:
        prepare()
        drop_rejects(con)
        source = file_rows(con, dataset, contract, path)
        try:
            with transaction(con):
                write(source)
        except (duckdb.InvalidInputException, duckdb.IOException) as error:
            # What the reader does not keep as a rejected line is the file's as a whole; any other DuckDB error
            # (a conflict, memory) is not the file's fault and is raised as it is.
            raise _landing_error(path, error) from None
        finally:
            drop_rejects(con)

    retry_on_conflict(attempt)


def replace_from_parquet(con: duckdb.DuckDBPyConnection, table: str, period: str | None, path: Path) -> int:
    """Replace ``table`` (one period of it, if given) with the rows of an exported version, atomically."""
    where = f"WHERE {PERIOD_COLUMN} = $period" if period else ""
    params = {"period": period} if period else {}

    def replace() -> None:
        with transaction(con):
            con.execute(f"DELETE FROM {table} {where}", params)
            con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({sql_string(path)})")

    retry_on_conflict(replace)
    return con.execute(f"SELECT count(*) FROM {table} {where}", params).fetchall()[0][0]


def content_hash(con: duckdb.DuckDBPyConnection, table: str, period: str | None = None) -> str:
    """An order-independent hash of a table's rows (of one period, if given): equal data, equal hash."""
    where = f"WHERE {PERIOD_COLUMN} = $period" if period else ""
    query = f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {table} AS t {where}"
    rows, total = con.execute(query, {"period": period} if period else {}).fetchall()[0]
    return f"{rows}-{total & (2**128 - 1):032x}"


def partition_row_count(con: duckdb.DuckDBPyConnection, table: str, period: str) -> int:
    query = f"SELECT count(*) FROM {table} WHERE {PERIOD_COLUMN} = ?"
    return con.execute(query, [period]).fetchall()[0][0]


def _landing_error(path: Path, error: duckdb.Error) -> LandingFileError:
    """A DuckDB error reading a file that the reader does not keep as a rejected line: lines ended in more than
    one way, which DuckDB's CSV reader cannot follow, or an I/O error."""
    mixed = mixed_line_ends(path) if path.suffix == ".csv" else None
    if mixed:
        return LandingFileError(path, None, f"mixed line ends ({mixed}); expected one kind throughout")
    line = re.search(r"Line: (\d+)", str(error))
    return LandingFileError(path, int(line.group(1)) if line else None, f"cannot be read: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
