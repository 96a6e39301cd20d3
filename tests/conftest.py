"""Shared fixtures: a real landing zone (every declared dataset) seeded once, and fresh warehouses and data
folders per test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dagster._core.storage.defs_state.base import _current_storage

from mlplatform.data.landing import seed
from mlplatform.datasets import Dataset, all_datasets, get_dataset

DATASETS = all_datasets()


def seed_periods(dataset: Dataset) -> list[str]:
    """The periods a dataset's seed writes by default (all of flights' 2013, employment's 2015-2018)."""
    return dataset.seed_periods


@pytest.fixture(autouse=True)
def no_current_defs_state_storage() -> Iterator[None]:
    """Each test starts with no current defs state storage. Dagster points it at the last instance entered and puts
    back the one before when that instance exits; an earlier test's instance left that way is closed by now, and
    building the definitions outside an instance then fails with "Attempted to resolve undefined DagsterInstance
    weakref" (test_recovery's and test_validation's left it so: seen when a worker ran test_executors after them)."""
    token = _current_storage.set(None)
    yield
    _current_storage.reset(token)


@pytest.fixture(scope="session")
def seeded_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real landing zone of every declared dataset, seeded once per session. Copy it before changing it."""
    landing = tmp_path_factory.mktemp("seeded") / "landing"
    for dataset in DATASETS.values():
        seed(landing, dataset, seed_periods(dataset))
    return landing


@pytest.fixture(scope="session")
def flights() -> Dataset:
    return get_dataset("flights")


@pytest.fixture(scope="session")
def employment() -> Dataset:
    return get_dataset("employment")


@pytest.fixture(params=sorted(DATASETS))
def dataset(request) -> Dataset:
    """Each declared dataset in turn: the generic tests run over every one."""
    return DATASETS[request.param]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp git repository, as a clone of the project would be: the DVC repository holding the data folder."""
    return git_project(tmp_path / "project")


def git_project(root: Path) -> Path:
    """A new git repository at ``root``, as the ``project`` fixture makes (for fixtures of a wider scope)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(root)], check=True)
    return root


@pytest.fixture
def landing(seeded_landing: Path, project: Path) -> Path:
    """A private copy of the seeded landing zone that a test may change."""
    copy = project / "data" / "landing"
    shutil.copytree(seeded_landing, copy)
    return copy


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        yield connection


@pytest.fixture(scope="module")
def reference_warehouse(seeded_landing: Path, tmp_path_factory: pytest.TempPathFactory):
    """One warehouse per test module with every dataset's reference tables loaded (validation checks columns
    against them); the module's tests load their periods into it."""
    with duckdb.connect(str(tmp_path_factory.mktemp("references") / "warehouse.duckdb")) as connection:
        for dataset in DATASETS.values():
            load_references(connection, seeded_landing, dataset)
        yield connection


@pytest.fixture
def data_dir(landing: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MLPLATFORM_DATA_DIR pointing at a temp folder holding a seeded landing zone."""
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(landing.parent))
    return landing.parent


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def load_references(con: duckdb.DuckDBPyConnection, landing: Path, dataset: Dataset) -> None:
    """Load a dataset's reference tables, as its reference job does: validation checks columns against them."""
    from mlplatform.data.landing import reference_file
    from mlplatform.data.warehouse import load_reference

    for table in dataset.reference:
        load_reference(con, dataset, dataset.contracts[table], reference_file(landing, dataset, table))
