"""Reading a landing file as its contract's rows, the rows that cannot be read included.

Every record of the file becomes one row: its cells typed by the contract where they parse, its line number
(``source_line``) and ``load_failures``, what the row broke while being read, as (column, check, raw value):

- a cell that is not of its column's type: ``dep_time:type(BIGINT)`` with the cell's text;
- NaN or an infinity (a DOUBLE, TIMESTAMP or DATE column holds finite values): ``temp:finite``;
- a line with too few or too many fields: ``flights:field_count(19)``, a value left unquoted or not text in the
  file's encoding: ``flights:quoting``, ``flights:encoding(utf-8)``; with the whole line as the raw value.

Validation quarantines such rows; good rows flow. What is wrong with the file as a whole (no header, missing or
unknown columns, another delimiter, not text) is a :class:`LandingFileError` naming the file.

A CSV file is read as text and cast in SQL with ``TRY_CAST``: one bad cell costs its row, never the file. Lines
DuckDB cannot split into the header's fields are kept by its rejects table (``store_rejects``) with their line
numbers and added back. Lines are numbered as DuckDB reads the file, in order, which it does on one thread; a
Parquet file keeps its parallel read (its rows are numbered by ``file_row_number``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb

from mlplatform.data.contracts import Contract
from mlplatform.data.landing import LandingFileError
from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets.dataset import PERIOD_COLUMN, Dataset

LINE_COLUMN = "source_line"  # the record's line in its file, the header being line 1 (Parquet: its row, from 1)
LOAD_FAILURES_COLUMN = "load_failures"
FAILURES_TYPE = "STRUCT(column_name VARCHAR, check_name VARCHAR, raw_value VARCHAR)[]"
REJECTS_TABLE, REJECTS_SCAN = "_landing_rejects", "_landing_reject_scans"
_FINITE = ("DOUBLE", "TIMESTAMP", "DATE")
_PYTHON_CODECS = {"utf-8": "utf-8-sig", "utf-16": "utf-16", "latin-1": "latin-1"}  # utf-8-sig: drops a BOM
_OTHER_DELIMITERS = (",", ";", "\t", "|")
_HEADER_BYTES = 1 << 16
_NOT_CSV = {b"\x1f\x8b": "a gzip-compressed file", b"PK\x03\x04": "a zip archive", b"PAR1": "a Parquet file"}


def file_rows(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, path: Path) -> str:
    """A SELECT of the file's rows: the contract's columns typed, then ``source_line`` and ``load_failures``.

    For a CSV file, the lines DuckDB rejected are collected in :data:`REJECTS_TABLE` once the SELECT has run:
    :func:`add_rejected_lines` puts them in, and :func:`drop_rejects` clears them.
    """
    if path.suffix == ".csv":
        return _csv_rows(dataset, contract, path)
    return _parquet_rows(con, contract, path)


def _csv_rows(dataset: Dataset, contract: Contract, path: Path) -> str:
    landing = dataset.declaration.landing
    header = csv_header(contract, path, landing.delimiter, landing.encoding)
    columns = ", ".join(f"{sql_string(name)}: 'VARCHAR'" for name in header)
    reader = (
        f"read_csv({sql_string(path)}, header = true, auto_detect = false, delim = {sql_string(landing.delimiter)}, "
        f"quote = '\"', escape = '\"', nullstr = {sql_string(landing.null_string)}, "
        f"encoding = {sql_string(landing.encoding)}, columns = {{{columns}}}, store_rejects = true, "
        f"rejects_table = {sql_string(REJECTS_TABLE)}, rejects_scan = {sql_string(REJECTS_SCAN)})"
    )
    # row_number() over the reader numbers the records it did not reject; add_rejected_lines shifts them past
    # the rejected ones.
    numbered = f"SELECT *, row_number() OVER () + 1 AS {LINE_COLUMN} FROM {reader}"
    return _typed(contract, numbered, text=True)


def _parquet_rows(con: duckdb.DuckDBPyConnection, contract: Contract, path: Path) -> str:
    reader = f"read_parquet({sql_string(path)}, file_row_number = true)"
    try:
        found = [row[0] for row in con.execute(f"DESCRIBE SELECT * EXCLUDE (file_row_number) FROM {reader}").fetchall()]
    except duckdb.Error as error:
        raise LandingFileError(path, None, f"not a readable Parquet file ({_first_line(error)})") from error
    problem = column_mismatch(contract.columns, found)
    if problem:
        raise LandingFileError(path, None, problem)
    numbered = f"SELECT *, file_row_number + 1 AS {LINE_COLUMN} FROM {reader}"
    return _typed(contract, numbered, text=False)


def _typed(contract: Contract, numbered: str, *, text: bool) -> str:
    """The contract's columns typed (NULL where a value does not parse), the line, and each row's load failures
    (NULL for a row read whole). Each cast runs once, in an inner projection; the failures only test its result.

    ``text``: the cells are text, and a timestamp is read with its offset and stored as UTC
    (make_timestamp(epoch_us(...)) rather than a CAST to TIMESTAMP, which would drop the offset).
    """
    parsed, typed, failures = [], [], []
    for position, (name, sql_type) in enumerate(contract.sql_types.items()):
        column = identifier(name)
        if sql_type == "VARCHAR":
            typed.append(column)
            continue
        cast = f"_parsed_{position}"
        parsed.append(
            f"TRY_CAST({column} AS {'TIMESTAMPTZ' if text and sql_type == 'TIMESTAMP' else sql_type}) AS {cast}"
        )
        timestamp = text and sql_type == "TIMESTAMP"
        typed.append(f"{f'make_timestamp(epoch_us({cast}))' if timestamp else cast} AS {column}")
        failures.append((f"{column} IS NOT NULL AND {cast} IS NULL", name, f"type({sql_type})"))
        if sql_type in _FINITE:
            failures.append((f"NOT isfinite({cast})", name, "finite"))
    entries = ", ".join(
        f"CASE WHEN {condition} THEN "
        f"{_failure(sql_string(column), sql_string(check), f'CAST({identifier(column)} AS VARCHAR)')} END"
        for condition, column, check in failures
    )
    any_failure = " OR ".join(f"coalesce({condition}, false)" for condition, _, _ in failures)
    listed = f"CASE WHEN {any_failure} THEN list_filter([{entries}], failure -> failure IS NOT NULL) END"
    return (
        f"SELECT {', '.join(typed)}, {LINE_COLUMN}, {listed if failures else 'NULL'}::{FAILURES_TYPE} "
        f"AS {LOAD_FAILURES_COLUMN} FROM (SELECT *{''.join(', ' + cast for cast in parsed)} FROM ({numbered}))"
    )


def _failure(column_sql: str, check_sql: str, raw_value_sql: str) -> str:
    return f"{{'column_name': {column_sql}, 'check_name': {check_sql}, 'raw_value': {raw_value_sql}}}"


def rejected_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many lines the last CSV read rejected (0 when none was read, as for Parquet)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [REJECTS_TABLE]
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute(f"SELECT count(DISTINCT line) FROM temp.{identifier(REJECTS_TABLE)}").fetchall()[0][0]


def add_rejected_lines(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, table: str, period: str, source_file: str
) -> int:
    """Put the lines the CSV reader rejected into the raw ``table``'s ``period`` and move the other rows' line
    numbers past them; returns how many lines were rejected.

    The reader numbered the k-th row it kept k + 1. A rejected line at ``line`` with j - 1 rejected lines before
    it has ``line - j - 1`` kept rows before it, so a kept row numbered n lies after it when ``line - j < n``.
    """
    rejected = rejected_count(con)
    if not rejected:
        return 0
    rejects = f"temp.{identifier(REJECTS_TABLE)}"
    positions = (
        f"SELECT line - row_number() OVER (ORDER BY line) AS kept_before FROM (SELECT DISTINCT line FROM {rejects})"
    )
    con.execute(
        f"UPDATE {table} SET {LINE_COLUMN} = {LINE_COLUMN} + (SELECT count(*) FROM ({positions}) "
        f"WHERE kept_before < {table}.{LINE_COLUMN}) WHERE {PERIOD_COLUMN} = $period",
        {"period": period},
    )
    nulls = ", ".join(f"NULL::{sql_type}" for sql_type in contract.sql_types.values())
    con.execute(
        f"INSERT INTO {table} SELECT {nulls}, $period, $source_file, line, failures "
        f"FROM ({_rejected_lines(dataset, contract)})",
        {"period": period, "source_file": source_file},
    )
    return rejected


def first_rejected_line(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract) -> tuple | None:
    """The first line the CSV reader rejected and its first failure, or None."""
    if not rejected_count(con):
        return None
    query = f"SELECT line, failures[1] FROM ({_rejected_lines(dataset, contract)}) ORDER BY line LIMIT 1"
    return con.execute(query).fetchall()[0]


def _rejected_lines(dataset: Dataset, contract: Contract) -> str:
    """One row per rejected line: ``line`` and its ``failures``, the whole line as the raw value."""
    fields, encoding = len(contract.columns), dataset.declaration.landing.encoding
    check = (
        f"CASE error_type WHEN 'MISSING COLUMNS' THEN 'field_count({fields})' "
        f"WHEN 'TOO MANY COLUMNS' THEN 'field_count({fields})' WHEN 'INVALID ENCODING' THEN 'encoding({encoding})' "
        "WHEN 'UNQUOTED VALUE' THEN 'quoting' ELSE lower(replace(error_type, ' ', '_')) END"
    )
    failure = _failure(sql_string(contract.name), check, "trim(csv_line, chr(13) || chr(10))")
    return (
        f"SELECT line, list_sort(list_distinct(list({failure})))::{FAILURES_TYPE} AS failures "
        f"FROM temp.{identifier(REJECTS_TABLE)} GROUP BY line"
    )


def describe_failure(failure: dict) -> str:
    """A load failure in words: ``year:type(BIGINT) fails on 'old'``."""
    return f"{failure['column_name']}:{failure['check_name']} fails on {failure['raw_value']!r}"


def drop_rejects(con: duckdb.DuckDBPyConnection) -> None:
    for name in (REJECTS_TABLE, REJECTS_SCAN):
        con.execute(f"DROP TABLE IF EXISTS temp.{identifier(name)}")


def csv_header(contract: Contract, path: Path, delimiter: str, encoding: str) -> list[str]:
    """The column names of a CSV file's header, in the file's order; a :class:`LandingFileError` saying what is
    wrong with it otherwise. Columns may come in any order; a byte-order mark and CRLF line ends are fine."""
    expected = delimiter.join(contract.columns)
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError as error:
        raise LandingFileError(path, None, f"cannot be read ({error.strerror})") from None
    if not head.strip():
        raise LandingFileError(path, 1, f"the file is empty; expected the header line {expected!r}")
    not_text = _not_text(head, encoding)
    if not_text:
        raise LandingFileError(path, 1, f"{not_text}; expected {encoding} CSV text")
    # Decoded leniently: a bad byte further down is that row's problem, not the header's.
    first_line = io.TextIOWrapper(
        io.BytesIO(head), encoding=_PYTHON_CODECS[encoding], errors="replace", newline=""
    ).readline()
    if "\ufffd" in first_line:
        raise LandingFileError(path, 1, f"the header is not {encoding} text; expected {encoding} CSV text")
    row = next(csv.reader([first_line.rstrip("\r\n")], delimiter=delimiter, skipinitialspace=True))
    found = [name.strip() for name in row]
    if len(found) == 1:
        for other in _OTHER_DELIMITERS:
            if other != delimiter and set(first_line.split(other)) & set(contract.columns):
                raise LandingFileError(
                    path,
                    1,
                    f"fields are separated by {other!r}, not {delimiter!r}; expected the header line {expected!r} "
                    "(or declare landing.delimiter)",
                )
    if not set(found) & set(contract.columns):
        raise LandingFileError(
            path, 1, f"no header line (the first line is {first_line.strip()[:80]!r}); expected {expected!r}"
        )
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise LandingFileError(path, 1, f"the header names {repeated} more than once; expected {expected!r}")
    problem = column_mismatch(contract.columns, found)
    if problem:
        raise LandingFileError(path, 1, problem)
    return found


def _not_text(head: bytes, encoding: str) -> str | None:
    """What a file that is not text in ``encoding`` is, from its first bytes; None if it may be text."""
    for magic, kind in _NOT_CSV.items():
        if head.startswith(magic):
            return kind
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and encoding != "utf-16":
        return "UTF-16 text (declare landing.encoding: utf-16 if that is intended)"
    if b"\x00" in head and encoding != "utf-16":
        return "not a text file (it holds binary data)"
    return None


def mixed_line_ends(path: Path) -> str | None:
    """How many lines end in each way where a file mixes them (``3 end in \\r\\n, 2 in \\n``); None where it
    does not. Read in chunks, and only once a read has failed."""
    crlf = lf = cr = 0
    with path.open("rb") as handle:
        carry = b""
        while chunk := handle.read(1 << 20):
            data = carry + chunk
            carry = b"\r" if data.endswith(b"\r") else b""  # a \r\n may straddle two chunks
            data = data[: len(data) - len(carry)]
            pairs = data.count(b"\r\n")
            crlf, lf, cr = crlf + pairs, lf + data.count(b"\n") - pairs, cr + data.count(b"\r") - pairs
        cr += len(carry)
    found = [f"{count} in {name}" for name, count in (("\\r\\n", crlf), ("\\n", lf), ("\\r", cr)) if count]
    return f"{found[0].replace(' in ', ' end in ')}, {', '.join(found[1:])}" if len(found) > 1 else None


def column_mismatch(expected: list[str], found: list[str]) -> str | None:
    """What is wrong with a file's columns, matched by name in any order; None when nothing is."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    if not missing and not unexpected:
        return None
    parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else ""]
    detail = "; ".join(part for part in parts if part)
    return f"wrong columns ({detail}); expected {expected}, in any order"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
