"""Disaster recovery in production, on real servers: a throwaway PostgreSQL (DuckLake's catalog) and moto's S3
(DuckLake's data files, DVC's remote).

- From the S3 remote alone, ``recover`` rebuilds an empty DuckLake (a new catalog, a new data path): the versioned
  tables and the registry come back with the same content hashes, and the backup's manifest lives in the bucket.
- A ``pg_dump`` of the lake's catalog, restored into a new database with ``pg_restore``, gives back the same lake
  over the same data files: the runbook's PostgreSQL half.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.backup import BACKUP_FOLDER, backups, read_manifest
from mlplatform.data import features, lake, landing, validation, warehouse
from mlplatform.data.versioning import export_table
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table
from mlplatform.ml import registry
from mlplatform.recovery import backup, recover
from production.servers import BUCKET, Postgres
from production.test_dvc_s3 import bucket, s3_repo, unique_prefix

YEAR = "2015"


def new_lake(postgres: Postgres, s3: str, extension_directory: Path) -> lake.LakeSettings:
    database = postgres.create_database()
    return lake.LakeSettings(postgres.libpq(database), f"s3://{BUCKET}/{database}/", s3, str(extension_directory))


def connector(settings: lake.LakeSettings) -> Callable:
    return lambda: closing(lake.connect(lake=settings))


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """employment's 2015 landing file, cut to its first 2000 people."""
    folder = tmp_path_factory.mktemp("landing")
    landing.seed(folder, get_dataset("employment"), [YEAR])
    path = landing.period_file(folder, get_dataset("employment"), "people", YEAR)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2001]))
    return path


def _hashes(settings: lake.LakeSettings) -> dict[str, object]:
    employment = get_dataset("employment")
    with closing(lake.connect(lake=settings)) as con:
        return {
            **{t: warehouse.content_hash(con, employment.table(t)) for t in (clean_table("people"), FEATURES_TABLE)},
            "registry": con.execute(f"SELECT * FROM {registry.VERSIONS_TABLE} ORDER BY ALL").fetchall(),
        }


def test_recover_rebuilds_an_empty_ducklake_from_the_s3_remote_alone(
    postgres, s3, extension_directory, people, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    employment, prefix = get_dataset("employment"), unique_prefix()
    source = new_lake(postgres, s3, extension_directory)
    repo = s3_repo(_git(tmp_path / "before"), s3, prefix)
    with closing(lake.connect(lake=source)) as con, dg.instance_for_test() as instance:
        contract = employment.contracts["people"]
        warehouse.load_raw_partition(con, employment, contract, YEAR, people)
        validation.split_partition(con, employment, contract, YEAR)
        features.build_features(con, employment, YEAR, dict(employment.declaration.features.params), 1)
        tables = [clean_table("people"), FEATURES_TABLE]
        exported = [
            export_table(con, employment.table(t), YEAR, repo.version_path(f"employment/{t}", YEAR)) for t in tables
        ]
        tracked = dict(zip(tables, repo.track_all(exported), strict=True))
        for table, version in tracked.items():
            metadata = {"dvc/md5": version.md5, "dvc/path": version.path}
            instance.report_runless_asset_event(
                dg.AssetMaterialization(dg.AssetKey(["employment", table]), partition=YEAR, metadata=metadata)
            )
        registry.register(con, _model_version("0" * 32 + ".dir", gate_passed=False))
        report = backup(instance, repo, connector(source))
    assert report.manifest.startswith(f"s3://{BUCKET}/{prefix}/{BACKUP_FOLDER}/backup-")
    assert (report.versions, report.snapshots) >= (2, 2)  # clean_people and features; the registry's tables
    manifest_key = report.manifest.removeprefix(f"s3://{BUCKET}/")
    assert bucket(s3).head_object(Bucket=BUCKET, Key=manifest_key)["ContentLength"] > 0

    # The empty machine: a new DVC repository with the same remote, a new Dagster instance, a new lake.
    target = new_lake(postgres, s3, extension_directory)
    empty = s3_repo(_git(tmp_path / "after"), s3, prefix)
    [name] = backups(empty)
    listed = {(entry.asset, entry.partition): entry.md5 for entry in read_manifest(empty, name) if not entry.snapshot}
    assert listed == {(f"employment/{table}", YEAR): version.md5 for table, version in tracked.items()}
    with dg.instance_for_test() as instance:
        recovered = recover(instance, empty, connector(target))
        assert recovered.tables == 2 and recovered.recorded == 2
    assert _hashes(target) == _hashes(source)


def test_a_pg_dump_of_the_catalog_restores_the_lake(postgres, s3, extension_directory, tmp_path):
    source = new_lake(postgres, s3, extension_directory)
    with closing(lake.connect(lake=source)) as con:
        con.execute("CREATE SCHEMA employment")
        con.execute(
            "CREATE TABLE employment.features AS SELECT i AS id, i % 3 = 0 AS is_employed FROM range(5000) r(i)"
        )
        registry.register(con, _model_version("1" * 32 + ".dir", gate_passed=True))
        before = warehouse.content_hash(con, "employment.features")
    dump = tmp_path / "lake.dump"
    server = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", postgres.user]
    catalog = source.catalog.split()[0].removeprefix("dbname=")
    subprocess.run([str(postgres.bin / "pg_dump"), *server, "-Fc", "-f", str(dump), catalog], check=True)
    restored = postgres.create_database("restored")
    subprocess.run([str(postgres.bin / "pg_restore"), *server, "-d", restored, str(dump)], check=True)

    again = lake.LakeSettings(postgres.libpq(restored), source.data_path, s3, str(extension_directory))
    with closing(lake.connect(lake=again)) as con:
        assert warehouse.content_hash(con, "employment.features") == before
        assert [v.version for v in registry.versions(con, "employment")] == ["1" * 32 + ".dir"]


def _model_version(version: str, gate_passed: bool) -> registry.ModelVersion:
    return registry.ModelVersion(
        model="employment",
        version=version,
        target_period="2016",
        window="2015..2015",
        training_data_version="0" * 32,
        metrics={"roc_auc": 0.9},
        gate_passed=gate_passed,
        gate_reason="a test's",
    )


def _git(folder: Path) -> Path:
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(folder)], check=True)
    return folder
