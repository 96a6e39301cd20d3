"""DVC versions: deterministic exports, tracking into a remote, restoring without the cache."""

import importlib.util
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


# Tracking a file without starting DVC (DVCRepo._add_file): the real `dvc` program must agree with what it wrote.


def _dvc(repo, *args: str) -> str:
    done = subprocess.run([repo.executable, *args], cwd=repo.root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _exported(repo, content: bytes, partition: str = "2013-01"):
    path = repo.version_path("flights/clean_flights", partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _cache_object(repo, md5):
    return repo.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def test_a_tracked_file_is_recorded_as_dvc_add_records_it(repo):
    """Same bytes, one file tracked here and one by `dvc add` itself: the same .dvc text, object and .gitignore."""
    ours = _exported(repo, b"the same bytes")
    version = repo.track(ours)
    theirs = _exported(repo, b"the same bytes", "2013-02")
    repo.run("add", "--quiet", str(theirs.relative_to(repo.root)))

    pointer = ours.with_name(ours.name + ".dvc").read_text()
    assert pointer == theirs.with_name(theirs.name + ".dvc").read_text().replace("2013-02", "2013-01")
    assert pointer == f"outs:\n- md5: {file_md5(ours)}\n  size: 14\n  hash: md5\n  path: 2013-01.parquet\n"
    cached = _cache_object(repo, version.md5)
    assert cached.read_bytes() == b"the same bytes" and cached.stat().st_mode & 0o777 == 0o444
    assert ours.stat().st_nlink == 1 and ours.stat().st_ino != cached.stat().st_ino  # a copy, as DVC's reflink,copy
    remote = _remote_object(repo, version.md5)
    assert remote.read_bytes() == b"the same bytes" and remote.stat().st_mode & 0o777 == 0o444
    assert (ours.parent / ".gitignore").read_text() == "/2013-01.parquet\n/2013-02.parquet\n"
    assert not list(ours.parent.glob("*.tmp")) and not list(cached.parent.glob("*.tmp"))


def test_dvc_finds_nothing_to_do_after_a_track(repo):
    first = _exported(repo, b"january")
    second = _exported(repo, b"february", "2013-02")
    repo.track_all([first, second])
    pointers = [str(path.relative_to(repo.root)) + ".dvc" for path in (first, second)]
    assert json.loads(_dvc(repo, "status", "--json", *pointers)) == {}
    assert json.loads(_dvc(repo, "status", "--cloud", "--json", *pointers)) == {}
    assert json.loads(_dvc(repo, "data", "status", "--json", "--granular")).get("uncommitted", {}) == {}
    # Git sees the .dvc files and the .gitignore, never the data.
    folder = "data/versions/flights/clean_flights"
    assert {path for path in _untracked(repo) if path.startswith(folder)} == {
        f"{folder}/.gitignore",
        f"{folder}/2013-01.parquet.dvc",
        f"{folder}/2013-02.parquet.dvc",
    }


def _untracked(repo) -> set[str]:
    git = ["git", "status", "--porcelain", "--untracked-files=all"]
    listed = subprocess.run(git, cwd=repo.root, capture_output=True, text=True, check=True).stdout
    return {line[3:] for line in listed.splitlines() if line.startswith("?? ")}


def test_a_changed_file_gets_a_new_version_and_dvc_brings_either_back(repo):
    path = _exported(repo, b"first version")
    pointer = path.with_name(path.name + ".dvc")
    first, first_pointer = repo.track(path), pointer.read_text()
    path.write_bytes(b"second version")
    second = repo.track(path)
    assert second.md5 == file_md5(path) != first.md5
    assert (path.parent / ".gitignore").read_text() == "/2013-01.parquet\n"  # written once

    relative = str(pointer.relative_to(repo.root))
    path.unlink()
    _dvc(repo, "checkout", relative)
    assert path.read_bytes() == b"second version"
    pointer.write_text(first_pointer)
    _dvc(repo, "checkout", "--force", relative)
    assert path.read_bytes() == b"first version"

    # Without the cache, from the remote.
    shutil.rmtree(repo.root / ".dvc" / "cache")
    path.unlink()
    _dvc(repo, "pull", relative)
    assert path.read_bytes() == b"first version"
    assert json.loads(_dvc(repo, "status", "--json", relative)) == {}


def test_dvc_gc_keeps_the_versions_in_use_and_those_kept(repo):
    path = _exported(repo, b"first version")
    first = repo.track(path)
    path.write_bytes(b"second version")
    second = repo.track(path)
    third = repo.track(_exported(repo, b"third, another file", "2013-02"))

    repo.collect_garbage(keep={first.md5})
    assert all(_cache_object(repo, version.md5).exists() for version in (first, second, third))
    repo.collect_garbage(keep=set(), cloud=True)
    assert not _cache_object(repo, first.md5).exists() and not _remote_object(repo, first.md5).exists()
    assert all(_cache_object(repo, v.md5).exists() and _remote_object(repo, v.md5).exists() for v in (second, third))
    assert repo.missing_from_remote({second.md5, third.md5}) == []


def test_tracking_from_several_workers_at_once_records_every_file(repo):
    paths = [_exported(repo, f"period {month}".encode(), f"2013-{month:02}") for month in range(1, 9)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(repo.track, paths))
    assert [version.md5 for version in versions] == [file_md5(path) for path in paths]
    assert sorted((paths[0].parent / ".gitignore").read_text().split()) == [f"/{path.name}" for path in paths]
    assert json.loads(_dvc(repo, "status", "--cloud", "--json")) == {}


def test_a_cache_folder_the_configuration_names_is_used(repo, tmp_path):
    repo.ensure_initialised()
    _dvc(repo, "cache", "dir", "--local", str(tmp_path / "shared-cache"))
    version = repo.track(_exported(repo, b"bytes"))
    assert (tmp_path / "shared-cache" / "files" / "md5" / version.md5[:2] / version.md5[2:]).read_bytes() == b"bytes"
    assert json.loads(_dvc(repo, "status", "--json")) == {}
    assert repo._cache_dir() == Path(_dvc(repo, "cache", "dir").strip())


def test_a_linking_cache_type_even_from_the_global_configuration_is_left_to_dvc(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "global"))
    repo.ensure_initialised()
    _dvc(repo, "config", "--global", "cache.type", "hardlink")
    path = _exported(repo, b"linked")
    version = repo.track(path)
    assert path.stat().st_ino == _cache_object(repo, version.md5).stat().st_ino  # DVC linked it
    assert json.loads(_dvc(repo, "status", "--json")) == {}


def test_a_file_dvc_would_refuse_is_left_to_dvc_which_refuses_it(repo):
    """A file .dvcignore ignores, a file git tracks: `dvc add` fails, and no .dvc file is written for either."""
    repo.ensure_initialised()
    (repo.root / ".dvcignore").write_text("# versions are data\n*.parquet\n")
    ignored = _exported(repo, b"ignored by DVC")
    with pytest.raises(DVCError, match="dvc add"):
        repo.track(ignored)
    (repo.root / ".dvcignore").unlink()

    tracked = _exported(repo, b"tracked by git", "2013-02")
    subprocess.run(["git", "add", "-f", str(tracked)], cwd=repo.root, check=True)
    with pytest.raises(DVCError, match="dvc add"):
        repo.track(tracked)
    assert not any(path.with_name(path.name + ".dvc").exists() for path in (ignored, tracked))


def test_outside_git_no_gitignore_is_written(tmp_path):
    repo = DVCRepo(tmp_path, default_executable(), str(tmp_path / "remote"), tmp_path / "versions")
    path = repo.version_path("flights/clean_flights", "2013-01")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"no git here")
    version = repo.track(path)
    assert not (path.parent / ".gitignore").exists()
    assert (tmp_path / "remote" / "files" / "md5" / version.md5[:2] / version.md5[2:]).read_bytes() == b"no git here"
    assert json.loads(_dvc(repo, "status", "--cloud", "--json")) == {}


def test_the_local_configuration_is_read_as_dvc_lists_it(repo):
    """The remote is read from .dvc/config.local without starting DVC; DVC quotes values with commas or #."""
    repo.ensure_initialised()
    _dvc(repo, "remote", "add", "--local", "--force", "default", "s3://bucket/a prefix")
    _dvc(repo, "remote", "modify", "--local", "default", "endpointurl", "http://host:9000/#a,b")
    listed = dict(line.split("=", 1) for line in _dvc(repo, "config", "--local", "--list").splitlines())
    assert repo._local_config() == {key: value for key, value in listed.items() if key.startswith("remote.default.")}
