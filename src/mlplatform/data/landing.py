"""The landing zone: one folder per dataset, where files arrive, and the seed that fills it with sample data.

Layout: ``landing/<dataset>/<source>/<period>.csv`` (or ``.parquet``) for each source, and
``landing/<dataset>/reference/<table>.csv`` for reference tables. Any period from the dataset's first on is
taken in; a file before the first period, in the future, or not named ``<period>.<csv|parquet>`` is left
untouched and reported with the reason.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import hashlib
import importlib.util
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets.dataset import Dataset, period_sql
from mlplatform.datasets.periods import PeriodError

LANDING_SUFFIXES = (".csv", ".parquet")
REFERENCE_FOLDER = "reference"


class LandingFileError(ValueError):
    """A landing file that cannot be read as its dataset: names the file, the line and what was expected."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def dataset_dir(landing_dir: Path, dataset: Dataset) -> Path:
    return Path(landing_dir) / dataset.name


def period_file(landing_dir: Path, dataset: Dataset, source: str, period: str) -> Path:
    """The one landing file of ``source`` for ``period``; an error if none or two exist, or if it leads out of
    the landing zone."""
    dataset.periods.parse(period)  # a period key is never a path: no '..', no '/'
    if source not in dataset.sources:
        raise ValueError(f"{dataset.name} has no source {source!r}; its sources are {dataset.sources}")
    candidates = [dataset_dir(landing_dir, dataset) / source / f"{period}{suffix}" for suffix in LANDING_SUFFIXES]
    return _one_of(landing_dir, candidates, f"{dataset.name} {source} {period}")


def reference_file(landing_dir: Path, dataset: Dataset, table: str) -> Path:
    if table not in dataset.reference:
        raise ValueError(
            f"{dataset.name} has no reference table {table!r}; its reference tables are {dataset.reference}"
        )
    folder = dataset_dir(landing_dir, dataset) / REFERENCE_FOLDER
    return _one_of(landing_dir, [folder / f"{table}{suffix}" for suffix in LANDING_SUFFIXES], f"{dataset.name} {table}")


def _one_of(landing_dir: Path, candidates: list[Path], what: str) -> Path:
    present = [path for path in candidates if path.exists()]
    if not present:
        raise FileNotFoundError(
            f"no landing file for {what}: expected {candidates[0]} or {candidates[1].name} "
            "(run `mlplatform seed` to fill the landing zone)"
        )
    if len(present) > 1:
        raise LandingFileError(present[0], None, f"both {present[0].name} and {present[1].name} exist; keep one")
    path, zone = present[0], Path(landing_dir).resolve()
    # A link (of the file or a folder above it) may not lead a load to a file outside the landing zone.
    if not path.resolve().is_relative_to(zone):
        raise LandingFileError(
            path, None, f"leads out of the landing zone (to {path.resolve()}); expected a file in {zone}"
        )
    if not path.is_file():
        raise LandingFileError(path, None, "not a regular file; expected a CSV or Parquet file")
    return path


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass
class LandingScan:
    """What a dataset's landing folder holds: periods with a file for every source, and files left alone."""

    periods: list[str] = field(default_factory=list)
    ignored: dict[Path, str] = field(default_factory=dict)  # file -> why it is not taken in


def scan(landing_dir: Path, dataset: Dataset, today: dt.date | None = None) -> LandingScan:
    """The periods ready to load (every source has its file), in order, and the files that are not taken in."""
    result = LandingScan()
    found: dict[str, dict[str, list[Path]]] = {}
    for source in dataset.sources:
        found[source] = {}
        folder = dataset_dir(landing_dir, dataset) / source
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            reason = _unusable(path, dataset, today)
            if reason:
                result.ignored[path] = reason
            else:
                found[source].setdefault(path.stem, []).append(path)
    for periods in found.values():
        for period, paths in list(periods.items()):
            if len(paths) > 1:
                for path in paths:
                    result.ignored[path] = f"both {' and '.join(p.name for p in paths)} exist; keep one"
                del periods[period]
    complete = set.intersection(*(set(periods) for periods in found.values())) if found else set()
    for periods in found.values():
        for period in sorted(set(periods) - complete):
            waiting = [other for other in dataset.sources if period not in found[other]]
            result.ignored[periods[period][0]] = f"waiting for {', '.join(waiting)}"
    result.periods = sorted(complete, key=dataset.periods.index)
    return result


def _unusable(path: Path, dataset: Dataset, today: dt.date | None) -> str | None:
    if path.name.endswith(".tmp"):
        return "a file still being written"
    if path.is_symlink() or not path.is_file():
        return "not a regular file"
    if path.suffix not in LANDING_SUFFIXES:
        return f"not named <period>{' or <period>'.join(LANDING_SUFFIXES)}"
    try:
        dataset.periods.parse(path.stem)
    except PeriodError as error:
        return str(error)
    if dataset.periods.index(path.stem) < dataset.periods.index(dataset.periods.start):
        return f"before the dataset's first period {dataset.periods.start}"
    if not dataset.periods.is_open(path.stem, today):
        return "a period in the future"
    return None


def seed(landing_dir: Path, dataset: Dataset, periods: list[str]) -> list[Path]:
    """Write the dataset's sample data as landing files in its declared format, one per source and period,
    plus its reference tables; returns the files written or changed.

    Idempotent: a file whose bytes would not change is left alone (so its modification time, which a sensor
    may watch, stays put). CSV values are copied as text, so the files keep the source's format.
    """
    spec = dataset.declaration.seed
    if spec is None:
        raise FileNotFoundError(f"dataset {dataset.name} declares no seed data (a `seed:` section in its defs.yaml)")
    landing = dataset.declaration.landing
    written = []
    with tempfile.TemporaryDirectory() as scratch, duckdb.connect() as con:
        for name, file in spec.files.items():
            path = _seed_file(dataset, name, file, Path(scratch))
            reader = (
                f"read_csv({sql_string(path)}, all_varchar = true)"
                if path.suffix == ".csv"
                else f"read_parquet({sql_string(path)})"
            )
            con.execute(f"CREATE VIEW {identifier(name)} AS SELECT * FROM {reader}")
        for table in [*dataset.sources, *dataset.reference]:
            query = spec.tables.get(table, f"SELECT * FROM {identifier(table)}")
            con.execute(f"CREATE TEMP TABLE {identifier('_' + table)} AS {query}")
        if landing.format == "csv":
            options = (
                f"FORMAT csv, HEADER true, DELIMITER {sql_string(landing.delimiter)}, "
                f"NULLSTR {sql_string(landing.null_string)}"
            )
        else:
            options = "FORMAT parquet, COMPRESSION zstd"
        suffix = f".{landing.format}"
        for source in dataset.sources:
            time_column = identifier(landing.sources[source].time_column)
            period = period_sql(dataset, source, time_column, as_text=True)
            for key in periods:
                query = f"SELECT * FROM {identifier('_' + source)} WHERE {period} = {sql_string(key)}"
                target = dataset_dir(landing_dir, dataset) / source / f"{key}{suffix}"
                if _copy_if_changed(con, query, target, options, landing.encoding):
                    written.append(target)
        for table in dataset.reference:
            target = dataset_dir(landing_dir, dataset) / REFERENCE_FOLDER / f"{table}{suffix}"
            if _copy_if_changed(con, f"SELECT * FROM {identifier('_' + table)}", target, options, landing.encoding):
                written.append(target)
    return written


def _seed_file(dataset: Dataset, name: str, file, scratch: Path) -> Path:
    """A seed file on disk: in an installed package's folder or the dataset's, taken out of its zip archive."""
    if file.package:
        spec = importlib.util.find_spec(file.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"the {file.package} package is not installed: run `make install`")
        base = Path(next(iter(spec.submodule_search_locations)))
    else:
        base = dataset.folder
    path = (base / file.path).resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        raise FileNotFoundError(f"seed file {name}: no file {file.path!r} in {base}")
    if file.member is None:
        return path
    with zipfile.ZipFile(path) as archive:
        return Path(archive.extract(file.member, scratch / name))


def _copy_if_changed(
    con: duckdb.DuckDBPyConnection, query: str, target: Path, options: str, encoding: str = "utf-8"
) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    con.execute(f"COPY ({query}) TO {sql_string(scratch)} ({options})")
    if target.suffix == ".csv" and encoding != "utf-8":  # DuckDB writes CSV in UTF-8 only
        scratch.write_bytes(scratch.read_text(encoding="utf-8").encode(encoding))
    if target.exists() and filecmp.cmp(scratch, target, shallow=False):
        scratch.unlink()
        return False
    os.replace(scratch, target)  # atomic: a reader never sees half a file
    return True
