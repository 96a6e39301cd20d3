"""The versioning story end to end, through the `mlplatform` command and the configured instance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mlplatform.catalog import recorded_versions
from mlplatform.cli import main
from mlplatform.data.versioning import read_md5
from mlplatform.data.warehouse import content_hash
from mlplatform.orchestration.resources.dvc import default_executable

ROOT = Path(__file__).parents[1]


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return home


def _versions(asset, partition):
    with dg.DagsterInstance.get() as instance:
        return recorded_versions(instance, asset, partition)


def _clean_hash(data_dir):
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return content_hash(con, "flights.clean_flights", "2013-01")


def test_change_rematerialize_and_restore_the_first_version(data_dir, project, dagster_home, capsys):
    exported = data_dir / "versions" / "flights" / "clean_flights" / "2013-01.parquet"
    dvc_file = exported.with_name(exported.name + ".dvc")

    assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01"]) == 0
    [first] = _versions("flights/clean_flights", "2013-01")
    assert first.md5 == read_md5(dvc_file) and first.path == "data/versions/flights/clean_flights/2013-01.parquet"
    first_bytes, first_hash = exported.read_bytes(), _clean_hash(data_dir)
    # What the platform tracked, DVC agrees is up to date.
    done = subprocess.run([default_executable(), "status"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0 and "up to date" in done.stdout, done.stdout + done.stderr

    landing = data_dir / "landing" / "flights" / "flights" / "2013-01.csv"
    lines = landing.read_text().splitlines()
    lines[1] = lines[1].replace(",2,830,", ",95,830,")  # the first flight left 95 minutes late
    landing.write_text("\n".join(lines) + "\n")
    assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01"]) == 0

    second, again = _versions("flights/clean_flights", "2013-01")
    assert again.md5 == first.md5 and second.md5 != first.md5
    assert second.md5 == read_md5(dvc_file)
    remote = data_dir / "dvc-remote" / "files" / "md5"
    assert all((remote / md5[:2] / md5[2:]).exists() for md5 in (first.md5, second.md5))
    # Unchanged data keeps its md5: the exports are deterministic.
    weather = _versions("flights/clean_weather", "2013-01")
    assert len(weather) == 2 and weather[0].md5 == weather[1].md5

    # Features name the exact upstream files: in their metadata, and through Dagster's data versions
    # (for a partitioned dependency, a sha256 over the partitions' versions, here one md5).
    with dg.DagsterInstance.get() as instance:
        features = instance.fetch_materializations(dg.AssetKey(["flights", "features"]), limit=1).records[0]
    materialization = features.asset_materialization
    assert materialization.metadata["dvc/inputs"].value == {
        "flights/clean_flights[2013-01]": second.md5,
        "flights/clean_weather[2013-01]": weather[0].md5,
    }
    input_version = materialization.tags["dagster/input_data_version/flights/clean_weather"]
    assert input_version == sha256(weather[0].md5.encode()).hexdigest()
    assert materialization.tags["dagster/data_version"] == materialization.metadata["dvc/md5"].value

    shutil.rmtree(project / ".dvc" / "cache")
    capsys.readouterr()
    assert main(["restore", "flights/clean_flights", "--partition", "2013-01", "--version", first.md5]) == 0
    restored = data_dir / "versions" / ".restore" / first.md5 / "2013-01.parquet"
    assert restored.read_bytes() == first_bytes
    assert _clean_hash(data_dir) == first_hash
    assert "flights/clean_flights [2013-01]" in (out := capsys.readouterr().out) and "27004 rows" in out

    # The asset may be named within its dataset, too.
    assert main(["versions", "clean_flights", "--dataset", "flights", "--partition", "2013-01"]) == 0
    listed = capsys.readouterr().out
    assert first.md5 in listed and second.md5 in listed and "flights/clean_flights" in listed


def test_versions_and_restore_explain_what_is_missing(data_dir, dagster_home, capsys):
    assert main(["versions", "flights/clean_flights"]) == 1
    assert "no recorded versions of flights/clean_flights" in capsys.readouterr().err
    assert main(["versions", "--dataset", "employment"]) == 1
    assert "no recorded versions of any asset" in capsys.readouterr().err
    assert main(["restore", "flights/clean_flights", "--version", "0" * 32]) == 1
    err = capsys.readouterr().err
    assert f"flights/clean_flights: no recorded version {'0' * 32}" in err and "mlplatform versions" in err
    assert main(["restore", "model", "--dataset", "employment", "--version", "0" * 32]) == 1
    assert "employment/model is a model: `mlplatform promote" in capsys.readouterr().err


def test_init_creates_the_dvc_repository(data_dir, project, dagster_home, capsys):
    assert main(["init"]) == 0
    assert (project / ".dvc" / "config").exists() and "default remote" in capsys.readouterr().out


def test_dagster_cli_selects_assets_with_dvc_installed(data_dir, project, dagster_home):
    """The antlr conflict stays solved: Dagster's own asset-selection parser works in the project env, on the
    datasets' two-part asset keys."""
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "asset", "materialize", "-m", "mlplatform.definitions", "--partition", "2013-01"]
    selection = "flights/raw_flights,flights/raw_weather"
    done = subprocess.run(
        [*command, "--select", selection], cwd=project, env={**os.environ}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ord() expected" not in done.stderr
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        counts = [
            con.execute(f"SELECT count(*) FROM flights.{table} WHERE period = '2013-01'").fetchone()[0]
            for table in ("raw_flights", "raw_weather")
        ]
    assert counts == [27_004, 2_226]
    assert shutil.which("dvc", path=str(Path(default_executable()).parent))


def test_gc_keeps_every_version_the_event_log_references(data_dir, project, dagster_home, capsys):
    landing = data_dir / "landing" / "employment" / "people" / "2015.csv"
    people = landing.read_text().splitlines()[:5_001]  # a sample of the year is enough here
    landing.write_text("\n".join(people) + "\n")
    assert main(["materialize", "--dataset", "employment", "--partitions", "2015"]) == 0
    [first] = _versions("employment/clean_people", "2015")
    landing.write_text("\n".join(people[:-1]) + "\n")  # one person fewer
    assert main(["materialize", "--dataset", "employment", "--partitions", "2015"]) == 0
    assert _versions("employment/clean_people", "2015")[0].md5 != first.md5
    cache = project / ".dvc" / "cache" / "files" / "md5"
    stray = data_dir / "versions" / "stray.parquet"
    stray.write_bytes(b"never recorded by Dagster")
    subprocess.run([default_executable(), "add", "-q", str(stray)], cwd=project, check=True)
    stray_md5 = read_md5(stray.with_name("stray.parquet.dvc"))
    stray.with_name("stray.parquet.dvc").unlink()

    assert main(["gc"]) == 0
    assert (cache / first.md5[:2] / first.md5[2:]).exists()  # only the event log still points at it
    assert not (cache / stray_md5[:2] / stray_md5[2:]).exists()
    assert "kept the" in capsys.readouterr().out
    assert not (data_dir / "versions" / ".keep").exists()

    # What plain `dvc gc --workspace` would have done: drop the first version.
    subprocess.run([default_executable(), "gc", "-w", "-f", "-q"], cwd=project, check=True)
    assert not (cache / first.md5[:2] / first.md5[2:]).exists()
