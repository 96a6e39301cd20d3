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
from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets.dataset import PERIOD_COLUMN, Dataset, clean_table, quarantine_table, raw_table

SOURCE_COLUMN = "source_file"
FAILED_CHECKS_COLUMN = "failed_checks"
_READ_AS = {"TIMESTAMP": "TIMESTAMPTZ"}


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
    """Create the raw, clean and quarantine tables of a source if they do not exist."""
    ensure_schema(con, dataset)
    columns = ", ".join(f"{identifier(name)} {sql_type}" for name, sql_type in contract.sql_types.items())
    lineage = f"{PERIOD_COLUMN} VARCHAR NOT NULL, {SOURCE_COLUMN} VARCHAR NOT NULL"
    con.execute(f"CREATE TABLE IF NOT EXISTS {dataset.table(raw_table(contract.name))} ({columns}, {lineage})")
    con.execute(f"CREATE TABLE IF NOT EXISTS {dataset.table(clean_table(contract.name))} ({columns}, {lineage})")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {dataset.table(quarantine_table(contract.name))} "
        f"({columns}, {lineage}, {FAILED_CHECKS_COLUMN} VARCHAR NOT NULL)"
    )


def load_raw_partition(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, period: str, path: Path
) -> int:
    """Replace ``period`` of the raw table with the rows of one landing file; returns the row count.

    A file that cannot be read as the contract's columns raises :class:`LandingFileError` and leaves the
    table untouched. A conflict with another writer is not the file's fault: the load runs again, and a conflict
    that outlasts the retries is raised as the ``duckdb.TransactionException`` it is.
    """
    table = dataset.table(raw_table(contract.name))

    def replace_period(source: str) -> None:
        con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = ?", [period])
        con.execute(f"INSERT INTO {table} SELECT *, ?, ? FROM ({source})", [period, path.name])

    _load_file(con, dataset, contract, path, lambda: ensure_tables(con, dataset, contract), replace_period)
    return partition_row_count(con, table, period)


def load_reference(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, path: Path) -> int:
    """Replace the whole reference table ``contract.name`` with one landing file; returns the row count."""
    table = dataset.table(contract.name)

    def replace_table(source: str) -> None:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {source}")

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
        source = _source(con, dataset, contract, path)
        try:
            with transaction(con):
                write(source)
        except duckdb.TransactionException:
            raise
        except duckdb.Error as error:
            raise _landing_error(path, contract, error) from error

    retry_on_conflict(attempt)


def _source(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, path: Path) -> str:
    if path.suffix == ".csv":
        return _csv_source(dataset, contract, path)
    return _parquet_source(con, contract, path)


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


def _csv_source(dataset: Dataset, contract: Contract, path: Path) -> str:
    landing = dataset.declaration.landing
    _check_csv_header(contract, path, landing.delimiter)
    # Timestamps are read with their offset and stored as UTC, so "+05:00" is not silently dropped.
    read_types = {name: _READ_AS.get(t, t) for name, t in contract.sql_types.items()}
    columns = ", ".join(f"{sql_string(name)}: {sql_string(t)}" for name, t in read_types.items())
    reader = (
        f"read_csv({sql_string(path)}, header = true, auto_detect = false, delim = {sql_string(landing.delimiter)}, "
        f"quote = '\"', escape = '\"', nullstr = {sql_string(landing.null_string)}, columns = {{{columns}}})"
    )
    # make_timestamp(epoch_us(...)) rather than a CAST: DuckDB pushes a CAST into the CSV reader, which then
    # parses the text as a plain TIMESTAMP and drops the offset.
    selected = (
        f"make_timestamp(epoch_us({identifier(name)})) AS {identifier(name)}" if t in _READ_AS else identifier(name)
        for name, t in contract.sql_types.items()
    )
    return f"SELECT {', '.join(selected)} FROM {reader}"


def _check_csv_header(contract: Contract, path: Path, delimiter: str) -> None:
    with path.open("rb") as handle:
        first_line = handle.readline(1 << 16)
    expected = delimiter.join(contract.columns)
    if not first_line.strip():
        raise LandingFileError(path, 1, f"the file is empty; expected the header line {expected!r}")
    try:
        found = first_line.decode("utf-8").strip().replace('"', "").split(delimiter)
    except UnicodeDecodeError:
        raise LandingFileError(path, 1, f"not a UTF-8 CSV file; expected the header line {expected!r}") from None
    if found != contract.columns:
        raise LandingFileError(path, 1, _column_mismatch(contract.columns, found))


def _parquet_source(con: duckdb.DuckDBPyConnection, contract: Contract, path: Path) -> str:
    reader = f"read_parquet({sql_string(path)})"
    try:
        found = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as error:
        raise LandingFileError(path, None, f"not a readable Parquet file ({_first_line(error)})") from error
    if sorted(found) != sorted(contract.columns):
        raise LandingFileError(path, None, _column_mismatch(contract.columns, found))
    casts = ", ".join(f"CAST({identifier(n)} AS {t}) AS {identifier(n)}" for n, t in contract.sql_types.items())
    return f"SELECT {casts} FROM {reader}"


def _column_mismatch(expected: list[str], found: list[str]) -> str:
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    detail = "; ".join(
        part
        for part in (
            f"missing {missing}" if missing else "",
            f"unexpected {unexpected}" if unexpected else "",
            "" if missing or unexpected else "columns out of order",
        )
        if part
    )
    return f"wrong columns ({detail}); expected {expected}"


def _landing_error(path: Path, contract: Contract, error: duckdb.Error) -> LandingFileError:
    message = str(error)
    line = re.search(r"Line: (\d+)", message)
    details = [text for text in message.splitlines() if text.startswith(("Error when", "Expected Number"))]
    problem = details[0] if details else _first_line(error)
    return LandingFileError(
        path, int(line.group(1)) if line else None, f"{problem} (expected the {contract.name} contract's types)"
    )


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
