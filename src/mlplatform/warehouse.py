"""DuckDB tables of the platform and the SQL that loads landing files into them.

Monthly tables carry a ``partition_month`` column; every write replaces one month inside a single
transaction, so re-running a partition never duplicates rows and a failed load leaves the table as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mlplatform.contracts import Contract
from mlplatform.landing import LandingFileError
from mlplatform.sql import sql_string

PARTITION_COLUMN = "partition_month"
SOURCE_COLUMN = "source_file"
FAILED_CHECKS_COLUMN = "failed_checks"
_READ_AS = {"TIMESTAMP": "TIMESTAMPTZ"}


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything inside commits together or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def raw_table(contract: Contract) -> str:
    return f"raw_{contract.name}"


def clean_table(contract: Contract) -> str:
    return f"clean_{contract.name}"


def quarantine_table(contract: Contract) -> str:
    return f"{contract.name}_quarantine"


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create the raw, clean and quarantine tables of a contract if they do not exist."""
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in contract.sql_types.items())
    lineage = f"{PARTITION_COLUMN} VARCHAR NOT NULL, {SOURCE_COLUMN} VARCHAR NOT NULL"
    con.execute(f"CREATE TABLE IF NOT EXISTS {raw_table(contract)} ({columns}, {lineage})")
    con.execute(f"CREATE TABLE IF NOT EXISTS {clean_table(contract)} ({columns}, {lineage})")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {quarantine_table(contract)} "
        f"({columns}, {lineage}, {FAILED_CHECKS_COLUMN} VARCHAR NOT NULL)"
    )


def load_raw_partition(con: duckdb.DuckDBPyConnection, contract: Contract, month: str, path: Path) -> int:
    """Replace ``month`` of the raw table with the rows of one landing file; returns the row count.

    A file that cannot be read as the contract's columns raises :class:`LandingFileError` and leaves the
    table untouched.
    """
    ensure_tables(con, contract)
    source = _csv_source(contract, path) if path.suffix == ".csv" else _parquet_source(con, contract, path)
    table = raw_table(contract)
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {PARTITION_COLUMN} = ?", [month])
            con.execute(f"INSERT INTO {table} SELECT *, ?, ? FROM ({source})", [month, path.name])
    except duckdb.Error as error:
        raise _landing_error(path, contract, error) from error
    return partition_row_count(con, table, month)


def load_reference(con: duckdb.DuckDBPyConnection, contract: Contract, path: Path) -> int:
    """Replace the whole reference table ``contract.name`` with one landing file; returns the row count."""
    source = _csv_source(contract, path)
    try:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {contract.name} AS {source}")
    except duckdb.Error as error:
        raise _landing_error(path, contract, error) from error
    return con.execute(f"SELECT count(*) FROM {contract.name}").fetchall()[0][0]


def replace_from_parquet(con: duckdb.DuckDBPyConnection, table: str, month: str | None, path: Path) -> int:
    """Replace ``table`` (one month of it, if given) with the rows of an exported version, atomically."""
    where = f"WHERE {PARTITION_COLUMN} = $month" if month else ""
    params = {"month": month} if month else {}
    with transaction(con):
        con.execute(f"DELETE FROM {table} {where}", params)
        con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({sql_string(path)})")
    return con.execute(f"SELECT count(*) FROM {table} {where}", params).fetchall()[0][0]


def content_hash(con: duckdb.DuckDBPyConnection, table: str, month: str | None = None) -> str:
    """An order-independent hash of a table's rows (of one month, if given): equal data, equal hash."""
    where = f"WHERE {PARTITION_COLUMN} = $month" if month else ""
    query = f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {table} AS t {where}"
    rows, total = con.execute(query, {"month": month} if month else {}).fetchall()[0]
    return f"{rows}-{total & (2**128 - 1):032x}"


def partition_row_count(con: duckdb.DuckDBPyConnection, table: str, month: str) -> int:
    query = f"SELECT count(*) FROM {table} WHERE {PARTITION_COLUMN} = ?"
    return con.execute(query, [month]).fetchall()[0][0]


def _csv_source(contract: Contract, path: Path) -> str:
    _check_csv_header(contract, path)
    # Timestamps are read with their offset and stored as UTC, so "+05:00" is not silently dropped.
    read_types = {name: _READ_AS.get(t, t) for name, t in contract.sql_types.items()}
    columns = ", ".join(f"{sql_string(name)}: {sql_string(t)}" for name, t in read_types.items())
    reader = (
        f"read_csv({sql_string(path)}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', nullstr = 'NA', columns = {{{columns}}})"
    )
    # make_timestamp(epoch_us(...)) rather than a CAST: DuckDB pushes a CAST into the CSV reader, which then
    # parses the text as a plain TIMESTAMP and drops the offset.
    selected = (
        f'make_timestamp(epoch_us("{name}")) AS "{name}"' if t in _READ_AS else f'"{name}"'
        for name, t in contract.sql_types.items()
    )
    return f"SELECT {', '.join(selected)} FROM {reader}"


def _check_csv_header(contract: Contract, path: Path) -> None:
    with path.open("rb") as handle:
        first_line = handle.readline(1 << 16)
    expected = ",".join(contract.columns)
    if not first_line.strip():
        raise LandingFileError(path, 1, f"the file is empty; expected the header line {expected!r}")
    try:
        found = first_line.decode("utf-8").strip().replace('"', "").split(",")
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
    casts = ", ".join(f'CAST("{name}" AS {t}) AS "{name}"' for name, t in contract.sql_types.items())
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
