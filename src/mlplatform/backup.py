"""Backups in the DVC remote: the manifest that says what each stored version is, and loading versions back into an
empty warehouse.

The remote holds every version's bytes under their md5, and nothing else: which table and period an md5 is, which
version each table holds now, and what the registry says live on the machine (the Dagster event log, the warehouse).
A backup writes those facts as a manifest beside DVC's objects, ``<remote>/mlplatform-backups/<UTC time>.json``
(newline-delimited JSON, one version a line), after exporting what no materialization versions (the reference tables
and the registry's tables) as versions of their own. From the remote alone, recovery reads the newest manifest back,
pulls the versions and loads them (:mod:`mlplatform.recovery` drives both).

A manifest is input like any other: each entry is checked (a declared dataset, a table it versions, a period key of
its grain, an md5) before it becomes a path or a table name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import polars as pl

from mlplatform.data.lake import create_s3_secret, default_extension_directory, install_extensions
from mlplatform.data.sql import NAME, identifier, sql_string
from mlplatform.data.versioning import MD5, DVCRepo
from mlplatform.data.warehouse import ensure_schema, ensure_tables, replace_from_parquet, transaction
from mlplatform.datasets.dataset import (
    FEATURES_TABLE,
    PREDICTIONS_TABLE,
    TRAINING_SET_TABLE,
    Dataset,
    clean_table,
)
from mlplatform.datasets.periods import PeriodError
from mlplatform.ml import registry

BACKUP_FOLDER = "mlplatform-backups"
# The registry's tables are versioned under this prefix; a dataset's name cannot start with "_".
REGISTRY = "_registry"
MODEL = "model"  # a dataset's model artifact: a folder version, ``versions/<dataset>/model``
_BACKUP_NAME = re.compile(r"backup-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{6}Z\.json")
_COLUMNS = {
    "asset": "VARCHAR",
    "partition": "VARCHAR",
    "md5": "VARCHAR",
    "recorded_at": "TIMESTAMPTZ",
    "current": "BOOLEAN",
    "snapshot": "BOOLEAN",
}


class BackupError(ValueError):
    """A backup that cannot be written or read back, a manifest entry that does not check out, or a platform that is
    not empty to recover into."""


@dataclass(frozen=True)
class Entry:
    """One version a backup lists."""

    asset: str  # "<dataset>/<table>", "<dataset>/model", or "_registry/<table>"
    partition: str | None
    md5: str
    recorded_at: dt.datetime
    current: bool  # the newest version of its asset and partition: the one the warehouse holds
    snapshot: bool  # exported by the backup (a reference or registry table), not recorded by a materialization

    @property
    def owner(self) -> str:
        return self.asset.partition("/")[0]

    @property
    def table(self) -> str:
        return self.asset.partition("/")[2]


def version_file(repo: DVCRepo, entry: Entry) -> Path:
    """Where the version lives in the workspace: a folder version (``<md5>.dir``) at ``versions/<asset>``, a table's
    at :meth:`DVCRepo.version_path`."""
    return (
        repo.versions_dir / entry.asset
        if entry.md5.endswith(".dir")
        else repo.version_path(entry.asset, entry.partition)
    )


def versioned_tables(dataset: Dataset) -> set[str]:
    """The tables of ``dataset`` that materializations version with DVC, and its model artifact."""
    return {
        *(clean_table(source) for source in dataset.sources),
        FEATURES_TABLE,
        TRAINING_SET_TABLE,
        PREDICTIONS_TABLE,
        MODEL,
    }


def check_entry(entry: Entry, datasets: dict[str, Dataset], registry_tables: set[str]) -> None:
    """Refuse an entry that would name a path or a table outside what the declared datasets and the registry have."""
    problem = None
    if not MD5.fullmatch(entry.md5) or entry.md5.endswith(".dir") != (entry.table == MODEL):
        problem = "is not the DVC md5 of such a version"
    elif entry.owner == REGISTRY:
        if not entry.snapshot or entry.partition is not None or entry.table not in registry_tables:
            problem = f"is not a table of the registry ({', '.join(sorted(registry_tables))})"
    elif entry.owner not in datasets:
        problem = f"names no declared dataset ({', '.join(sorted(datasets))})"
    else:
        dataset = datasets[entry.owner]
        known = set(dataset.reference) if entry.snapshot else versioned_tables(dataset)
        periodic = not entry.snapshot and entry.table not in (TRAINING_SET_TABLE, MODEL)
        if entry.table not in known:
            problem = f"is not a table {dataset.name} versions ({', '.join(sorted(known))})"
        elif (entry.partition is None) == periodic:
            problem = "has a partition where its table has none, or none where it has"
        elif entry.partition is not None:
            try:
                dataset.periods.parse(entry.partition)
            except PeriodError as error:
                problem = f"has a partition that is no period: {error}"
    if problem:
        raise BackupError(f"manifest entry {entry.asset} [{entry.partition or '-'}] {entry.md5!r} {problem}")


def registry_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The registry's tables: every table of the warehouse's default schema (each dataset has its own schema)."""
    registry.ensure_registry(con)
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() ORDER BY table_name"
    ).fetchall()
    return [name for (name,) in rows if re.fullmatch(NAME, name)]


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
        "AND table_name = ?",
        [schema, table],
    ).fetchone()[0]
    return found > 0


def tables_with_rows(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The warehouse's tables that hold a row: recovery only fills an empty warehouse."""
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY ALL"
    ).fetchall()
    return [
        f"{schema}.{table}"
        for schema, table in tables
        if con.execute(f"SELECT EXISTS (FROM {identifier(schema)}.{identifier(table)})").fetchone()[0]
    ]


def load_version(con: duckdb.DuckDBPyConnection, dataset: Dataset, entry: Entry, path: Path) -> int:
    """Load one table version into its (empty) table; returns its row count. A clean table is created from its
    contract, as ingestion creates it; the others from the version's own columns, as their assets create them."""
    table = dataset.table(entry.table)
    if entry.snapshot:
        ensure_schema(con, dataset)
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet({sql_string(path)})")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    sources = {clean_table(source): source for source in dataset.sources}
    if entry.table in sources:
        ensure_tables(con, dataset, dataset.contracts[sources[entry.table]])
    else:
        ensure_schema(con, dataset)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM read_parquet({sql_string(path)}) LIMIT 0")
    return replace_from_parquet(con, table, entry.partition, path)


def load_registry(con: duckdb.DuckDBPyConnection, paths: dict[str, Path]) -> dict[str, int]:
    """Replace the registry's tables (name -> exported version) in one transaction; returns their row counts."""
    registry.ensure_registry(con)
    with transaction(con):
        for name, path in paths.items():
            con.execute(f"DELETE FROM {identifier(name)}")
            con.execute(f"INSERT INTO {identifier(name)} BY NAME SELECT * FROM read_parquet({sql_string(path)})")
    return {name: con.execute(f"SELECT count(*) FROM {identifier(name)}").fetchone()[0] for name in paths}


def backups_location(repo: DVCRepo) -> str:
    """The folder (or ``s3://`` prefix) beside the remote's objects that holds its backups' manifests."""
    url = repo.remote_url.rstrip("/")
    if "://" not in url:  # a folder; DVC reads a relative one from the repository's root
        return str((repo.root / url).resolve() / BACKUP_FOLDER)
    if not url.startswith("s3://"):
        raise BackupError(f"backups go to a folder or an s3:// remote, not {url.split('://')[0]}://")
    return f"{url}/{BACKUP_FOLDER}"


@contextmanager
def _remote(repo: DVCRepo) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB connection that reads and writes the backups' location (S3 through httpfs), and that location."""
    location = backups_location(repo)
    with duckdb.connect() as con:
        if location.startswith("s3://"):
            install_extensions(con, default_extension_directory())
            create_s3_secret(con, repo.s3_endpoint)
        else:
            Path(location).mkdir(parents=True, exist_ok=True)
        yield con, location


def write_manifest(repo: DVCRepo, entries: list[Entry], now: dt.datetime) -> str:
    """Write the manifest of ``entries`` into the remote; returns where it went."""
    name = f"backup-{now.astimezone(dt.UTC).strftime('%Y-%m-%dT%H-%M-%S.%f')}Z.json"
    frame = pl.DataFrame([asdict(entry) for entry in entries], schema=_polars_schema(), orient="row")
    with _remote(repo) as (con, location):
        con.register("manifest", frame.to_arrow())
        target = f"{location}/{name}"
        con.execute(f"COPY (SELECT * FROM manifest ORDER BY ALL) TO {sql_string(target)} (FORMAT json)")
    return target


def backups(repo: DVCRepo) -> list[str]:
    """The names of the remote's backups, oldest first."""
    with _remote(repo) as (con, location):
        found = con.execute("SELECT file FROM glob(?)", [f"{location}/backup-*.json"]).fetchall()
    return sorted(name for (file,) in found if _BACKUP_NAME.fullmatch(name := file.rsplit("/", 1)[-1]))


def read_manifest(repo: DVCRepo, name: str) -> list[Entry]:
    """The entries of the backup ``name`` (one of :func:`backups`)."""
    if not _BACKUP_NAME.fullmatch(name):
        raise BackupError(f"{name!r} is not the name of a backup (backup-<UTC time>.json)")
    columns = ", ".join(f"{sql_string(column)}: {sql_string(kind)}" for column, kind in _COLUMNS.items())
    with _remote(repo) as (con, location):
        source = sql_string(f"{location}/{name}")
        try:
            rows = con.execute(
                f"SELECT {', '.join(map(identifier, _COLUMNS))} FROM read_json({source}, "
                f"format = 'newline_delimited', columns = {{{columns}}})"
            ).fetchall()
        except duckdb.IOException as error:
            raise BackupError(f"backup {name} cannot be read from {location}: {error}") from None
    return [Entry(*row) for row in rows]


def _polars_schema() -> dict[str, pl.DataType]:
    kinds = {"VARCHAR": pl.String, "TIMESTAMPTZ": pl.Datetime("us", "UTC"), "BOOLEAN": pl.Boolean}
    return {column: kinds[kind] for column, kind in _COLUMNS.items()}
