"""DVC versions: deterministic exports, tracking into a remote, restoring without the cache."""

import importlib.util
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from mlplatform.data.versioning import DVCError, DVCRepo, export_table, file_md5, read_md5
from mlplatform.orchestration.resources.dvc import default_executable


@pytest.fixture
def repo(project):
    return DVCRepo(
        root=project,
        executable=default_executable(),
        remote_url=str(project / "data" / "dvc-remote"),
        versions_dir=project / "data" / "versions",
    )


def _remote_object(repo, md5):
    return repo.root / "data" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]


def test_dvc_is_kept_out_of_the_platform_environment():
    # DVC's hydra-core would pin antlr4 4.9 and break Dagster's asset-selection parser.
    assert importlib.util.find_spec("dvc") is None
    assert importlib.util.find_spec("antlr4").loader is not None
    from antlr4 import Recognizer

    assert Recognizer  # imported from the 4.13 runtime Dagster needs
    assert subprocess.run([default_executable(), "--version"], capture_output=True, text=True).stdout.startswith("3.")


def test_init_is_inside_git_with_a_default_remote(repo):
    repo.ensure_initialised()
    repo.ensure_initialised()  # idempotent
    shared, local = ((repo.root / ".dvc" / name).read_text() for name in ("config", "config.local"))
    assert "analytics = false" in shared and "dvc-remote" not in shared
    assert "remote = default" in local and str(repo.root / "data" / "dvc-remote") in local
    assert (repo.root / ".dvc" / ".gitignore").exists()  # made with git, not --no-scm


def test_workers_initialising_one_repository_at_once_all_succeed(project):
    """Steps on several Celery workers share one DVC repository; the first steps of a backfill start together."""
    repos = [
        DVCRepo(root=project, executable=default_executable(), remote_url=str(project / "remote"),
                versions_dir=project / "data" / "versions")
        for _ in range(4)
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda repo: repo.ensure_initialised(), repos))
    assert (project / ".dvc").is_dir()
    assert "remote" in (project / ".dvc" / "config.local").read_text()


def test_init_without_git_uses_no_scm(tmp_path):
    repo = DVCRepo(tmp_path, default_executable(), str(tmp_path / "remote"), tmp_path / "versions")
    repo.ensure_initialised()
    assert "no_scm = True" in (tmp_path / ".dvc" / "config").read_text()


def test_two_versions_reach_the_remote_and_the_first_comes_back_without_the_cache(repo):
    path = repo.version_path("flights/clean_flights", "2013-01")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"first version")
    first = repo.track(path)
    assert first.md5 == file_md5(path) == read_md5(path.with_name(path.name + ".dvc"))
    assert first.path == "data/versions/flights/clean_flights/2013-01.parquet" and first.git_revision is None
    path.write_bytes(b"second version")
    second = repo.track(path)
    assert second.md5 != first.md5
    assert _remote_object(repo, first.md5).exists() and _remote_object(repo, second.md5).exists()

    shutil.rmtree(repo.root / ".dvc" / "cache")
    restored = repo.restore(first.md5, path.name)
    assert restored.read_bytes() == b"first version"


def test_a_folder_version_comes_back_whole_and_a_corrupted_file_is_refused(repo):
    folder = repo.versions_dir / "flights" / "model"
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(b"weights one")
    (folder / "manifest.json").write_text("{}")
    first = repo.track(folder)
    (folder / "weights.pt").write_bytes(b"weights two")
    assert repo.track(folder).md5 != first.md5 and first.md5.endswith(".dir")

    shutil.rmtree(repo.root / ".dvc" / "cache")
    restored = repo.restore(first.md5, "model")
    assert (restored / "weights.pt").read_bytes() == b"weights one"
    assert repo.restore(first.md5, "model") == restored  # already there: nothing pulled

    (restored / "weights.pt").write_bytes(b"tampered")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    assert (repo.restore(first.md5, "model") / "weights.pt").read_bytes() == b"weights one"


def test_versions_live_under_their_dataset(repo):
    versions = repo.root / "data" / "versions"
    assert repo.version_path("flights/clean_flights", "2013-01") == versions / "flights/clean_flights/2013-01.parquet"
    assert repo.version_path("employment/features", "2016") == versions / "employment/features/2016.parquet"
    # An unpartitioned table's one file is named after the table.
    assert repo.version_path("flights/training_set", None) == versions / "flights/training_set/training_set.parquet"


def test_git_revision_is_recorded_when_there_is_one(repo):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty", "-qm", "start"],
        cwd=repo.root,
        check=True,
    )
    path = repo.version_path("flights/training_set", None)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"planes")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo.root, capture_output=True, text=True).stdout.strip()
    assert repo.track(path).git_revision == head


def test_restoring_an_unknown_version_quotes_dvc(repo):
    repo.ensure_initialised()
    with pytest.raises(DVCError, match="dvc pull") as raised:
        repo.restore("0" * 32, "missing.parquet")
    assert "exit" in str(raised.value)


def test_a_missing_dvc_program_says_how_to_install_it(project):
    repo = DVCRepo(project, str(project / "no-such-dvc"), "remote", project / "versions")
    with pytest.raises(DVCError, match="make install"):
        repo.ensure_initialised()


def test_exports_are_deterministic_whatever_the_insertion_order(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i AS id, i % 7 AS bucket, '2013-01' AS period FROM range(200000) r(i)")
    con.execute("CREATE TABLE shuffled AS SELECT * FROM t ORDER BY random()")
    first = export_table(con, "t", "2013-01", tmp_path / "a.parquet")
    again = export_table(con, "t", "2013-01", tmp_path / "b.parquet")
    shuffled = export_table(con, "shuffled", "2013-01", tmp_path / "c.parquet")
    assert file_md5(first) == file_md5(again) == file_md5(shuffled)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_pointer_a_killed_dvc_add_left_half_written_is_written_again(repo):
    """DVC writes a .dvc file in place: a kill during the write leaves it cut short, and DVC refuses to read it."""
    path = repo.version_path("employment/features", "2016")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the period's features")
    whole = repo.track(path)
    pointer = path.with_name(path.name + ".dvc")
    text = pointer.read_text()
    for cut in (0, 5, text.index("size"), len(text) - 3):
        pointer.write_text(text[:cut])
        assert repo.track(path) == whole
        assert pointer.read_text() == text
