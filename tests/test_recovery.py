"""The disaster recovery drill: a small platform (employment's 2015 and 2016, flights' reference tables and 2013-01,
each period sampled) is trained, scored and backed up into its DVC remote. An empty machine (a new project folder:
no warehouse, no Dagster instance, no DVC cache) is given that remote alone, and `mlplatform recover` rebuilds it
with the same content hashes, registry and champion. The recovered platform then scores as before."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import git_project

from mlplatform.backup import REGISTRY, BackupError, Entry, backups, backups_location, check_entry, read_manifest
from mlplatform.catalog import recorded_versions
from mlplatform.cli import main
from mlplatform.data.sql import identifier
from mlplatform.data.versioning import DVCRepo, file_md5, read_md5
from mlplatform.data.warehouse import content_hash
from mlplatform.datasets import all_datasets
from mlplatform.orchestration.resources.dvc import default_executable

ROOT = Path(__file__).parents[1]
SAMPLE_ROWS = {"employment/people": 5000, "flights/flights": 3000}
REFERENCE = ("airlines", "airports", "planes")


@dataclass(frozen=True)
class Platform:
    project: Path
    remote: Path  # the DVC remote: in production off the machine, the one thing that survives it
    seconds: dict[str, float]


def _use(patch: pytest.MonkeyPatch, project: Path, remote: Path) -> None:
    patch.setenv("MLPLATFORM_DATA_DIR", str(project / "data"))
    patch.setenv("DAGSTER_HOME", str(project / ".dagster"))
    patch.setenv("MLPLATFORM_DVC_REMOTE_URL", str(remote))
    patch.chdir(ROOT)  # `mlplatform` copies ./dagster.yaml into a new Dagster home


def _landing(seeded_landing: Path, landing: Path) -> None:
    """The landed files the drill uses, the periods cut to their first rows (the drill is about recovery, not
    scale)."""
    wanted = ["employment/people/2015.csv", "employment/people/2016.csv", "flights/flights/2013-01.csv"]
    wanted += [
        "flights/weather/2013-01.csv",
        *(f"flights/reference/{t}.csv" for t in ("airlines", "airports", "planes")),
    ]
    for name in wanted:
        target = landing / name
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = (seeded_landing / name).read_text().splitlines(keepends=True)
        rows = SAMPLE_ROWS.get(name.rsplit("/", 1)[0])
        target.write_text("".join(lines[: rows + 1] if rows else lines))


@pytest.fixture(scope="module")
def platform(tmp_path_factory, seeded_landing) -> Platform:
    root = tmp_path_factory.mktemp("drill")
    project, remote = git_project(root / "project"), root / "remote"
    _landing(seeded_landing, project / "data" / "landing")
    seconds = {}
    with pytest.MonkeyPatch.context() as patch:
        _use(patch, project, remote)
        assert main(["materialize", "--dataset", "employment", "--partitions", "2015..2016"]) == 0
        assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01"]) == 0
        started = time.monotonic()
        assert main(["backup"]) == 0
        seconds["backup"] = time.monotonic() - started
    return Platform(project, remote, seconds)


def _state(project: Path) -> dict[str, object]:
    """What recovery must give back: every table's content hash (but the raw and quarantine tables, which are
    rebuilt from landing files), the registry's rows, and each model's champion."""
    with duckdb.connect(str(project / "data" / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
        state: dict[str, object] = {
            f"{schema}.{table}": content_hash(con, f"{identifier(schema)}.{identifier(table)}")
            for schema, table in tables
            if not table.startswith("raw_") and not table.endswith("_quarantine")
        }
        for table in ("model_versions", "model_promotions"):
            state[f"rows of {table}"] = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    return state


def _artifact_md5s(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): file_md5(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def test_recover_rebuilds_the_platform_from_the_remote_alone(platform, tmp_path, monkeypatch, capsys):
    before = _state(platform.project)
    [champion] = {row[2] for row in before["rows of model_promotions"]}
    artifact_before = _artifact_md5s(platform.project / "data" / "versions" / "employment" / "model")

    empty = git_project(tmp_path / "empty")
    _use(monkeypatch, empty, platform.remote)
    capsys.readouterr()
    started = time.monotonic()
    assert main(["recover"]) == 0
    recovered_in = time.monotonic() - started
    out = capsys.readouterr().out

    assert _state(empty) == before
    assert f"employment: champion {champion}, artifact checked out" in out
    restored = empty / "data" / "versions" / ".restore" / champion / "model"
    assert _artifact_md5s(restored) == artifact_before
    tables = {name for name in before if not name.startswith("rows of")}
    assert {"employment.clean_people", "flights.airlines", "main.model_versions"} <= tables
    # The workspace is DVC's again: each version at its path, checked out, up to date.
    done = subprocess.run([default_executable(), "status"], cwd=empty, capture_output=True, text=True, check=True)
    assert "up to date" in done.stdout

    # The event log records each version again, per partition, the newest one last.
    with dg.DagsterInstance.get() as instance:
        people = recorded_versions(instance, "employment/clean_people")
        assert sorted(version.partition for version in people) == ["2015", "2016"]
        features = instance.fetch_materializations(dg.AssetKey(["employment", "features"]), limit=1).records[0]
        metadata = features.asset_materialization.metadata
        assert metadata["recovered_from"].value in out and metadata["content_hash"].value.startswith("5000-")

    # The recovered platform works: the champion scores 2016 again, to the same predictions (up to float32's last
    # bit: PyTorch's CPU kernels may sum in another order from one run to the next).
    from mlplatform.definitions import build_definitions

    with dg.DagsterInstance.get() as instance:
        job = build_definitions().resolve_job_def("employment_scoring")
        assert job.execute_in_process(instance=instance, partition_key="2016").success
    with duckdb.connect() as con:
        for name, project in (("before", platform.project), ("after", empty)):
            con.execute(f"ATTACH '{project / 'data' / 'warehouse.duckdb'}' AS {name} (READ_ONLY)")
        rows, same_model, largest = con.execute(
            "SELECT count(*), bool_and(a.model_version = b.model_version), max(abs(a.probability - b.probability)) "
            "FROM before.employment.predictions AS b JOIN after.employment.predictions AS a USING (id, period) "
            "WHERE period = '2016'"
        ).fetchone()
    assert rows == 5000 and same_model and largest < 1e-6

    # Every version the backup lists stays in the remote through a garbage collection there.
    repo = DVCRepo(empty, default_executable(), str(platform.remote), empty / "data" / "versions")
    [name] = backups(repo)
    assert main(["gc", "--cloud"]) == 0
    listed = read_manifest(repo, name)
    objects = platform.remote / "files" / "md5"
    assert all((objects / entry.md5[:2] / entry.md5[2:]).exists() for entry in listed)

    # Recovery fills an empty platform only.
    assert main(["recover"]) == 1
    assert "recovery fills an empty warehouse; this one holds" in capsys.readouterr().err

    seconds = {**platform.seconds, "recover": recovered_in}
    timings = json.dumps({name: round(value, 1) for name, value in seconds.items()})
    print(f"\ndisaster recovery drill: {timings}; {out.splitlines()[0]}")


def test_recover_lists_the_backups_and_says_when_there_is_none(platform, tmp_path, monkeypatch, capsys):
    _use(monkeypatch, git_project(tmp_path / "a"), platform.remote)
    assert main(["recover", "--list"]) == 0
    assert capsys.readouterr().out.startswith("backup-")
    assert main(["recover", "--backup", "../../etc/passwd"]) == 1
    assert "'../../etc/passwd' is not the name of a backup" in capsys.readouterr().err
    assert main(["recover", "--backup", "backup-2000-01-01T00-00-00.000000Z.json"]) == 1
    assert "backup backup-2000-01-01T00-00-00.000000Z.json cannot be read" in capsys.readouterr().err
    _use(monkeypatch, git_project(tmp_path / "b"), tmp_path / "no-remote")
    assert main(["recover"]) == 1
    assert f"no backup in {tmp_path / 'no-remote' / 'mlplatform-backups'}" in capsys.readouterr().err


GOOD = Entry("employment/clean_people", "2015", "0" * 32, dt.datetime.now(dt.UTC), current=True, snapshot=False)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"asset": "../../etc/clean_people"}, "names no declared dataset"),
        ({"asset": "employment/raw_people"}, "is not a table employment versions"),
        ({"asset": "employment/people_quarantine"}, "is not a table employment versions"),
        ({"partition": "../../../x"}, "has a partition that is no period"),
        ({"partition": None}, "has a partition where its table has none"),
        ({"md5": "../" + "0" * 29}, "is not the DVC md5 of such a version"),
        ({"asset": "employment/model", "partition": None}, "is not the DVC md5 of such a version"),
        ({"asset": f"{REGISTRY}/users", "partition": None, "snapshot": True}, "is not a table of the registry"),
        ({"asset": f"{REGISTRY}/model_versions", "partition": None}, "is not a table of the registry"),
        ({"asset": "flights/planes", "partition": None}, "is not a table flights versions"),
        ({"asset": "flights/features", "partition": None, "snapshot": True}, "is not a table flights versions"),
    ],
)
def test_a_manifest_entry_that_does_not_check_out_is_refused(changes, problem):
    """A manifest is input: nothing in it becomes a path or a table name unchecked."""
    check_entry(GOOD, all_datasets(), {"model_versions"})
    with pytest.raises(BackupError, match=problem):
        check_entry(replace(GOOD, **changes), all_datasets(), {"model_versions"})


def test_the_remote_must_hold_every_version_a_backup_lists(project):
    remote = project / "remote"
    repo = DVCRepo(project, default_executable(), str(remote), project / "data" / "versions")
    pushed, only_cached = repo.version_path("a/b", "1"), repo.version_path("a/b", "2")
    for path, text in ((pushed, "pushed"), (only_cached, "only in the cache")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    first = repo.track(pushed).md5
    repo.run("add", "--quiet", str(only_cached.relative_to(project)))
    second = read_md5(Path(f"{only_cached}.dvc"))
    # A version only the cache holds is pushed; one the remote lost and the cache lacks cannot be backed up.
    assert repo.missing_from_remote({first, second}) == []
    assert (remote / "files" / "md5" / second[:2] / second[2:]).exists()
    shutil.rmtree(project / ".dvc" / "cache")
    (remote / "files" / "md5" / first[:2] / first[2:]).unlink()
    assert repo.missing_from_remote({first, second}) == [first]


def test_backups_go_to_a_folder_or_s3_only(project):
    for url, where in (("s3://bucket/dvc/", "s3://bucket/dvc/mlplatform-backups"), ("remote", None)):
        repo = DVCRepo(project, default_executable(), url, project / "data" / "versions")
        assert backups_location(repo) == (where or str(project / "remote" / "mlplatform-backups"))
    with pytest.raises(BackupError, match="backups go to a folder or an s3:// remote, not gs://"):
        backups_location(DVCRepo(project, default_executable(), "gs://bucket/dvc", project / "data" / "versions"))
