"""Data versions with DVC, driven through its command line.

DVC lives in its own environment (its hydra-core pins an antlr runtime that breaks Dagster's asset-selection
parser), so the platform never imports it: every call goes through :class:`DVCRepo`, which runs the ``dvc``
program with ``--wait-for-lock`` and analytics off, and turns a failure into :class:`DVCError` quoting DVC.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from mlplatform.data.lake import endpoint_url
from mlplatform.data.sql import sql_string
from mlplatform.logs import redact

RESTORE_FOLDER = ".restore"
INIT_LOCK = ".init.lock"
KEEP_FOLDER = ".keep"
CHECK_FOLDER = ".check"
MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")  # a DVC version: a file's md5, or a folder's listing's


class DVCError(RuntimeError):
    """A DVC command failed; the message quotes what DVC said."""


@dataclass(frozen=True)
class Version:
    md5: str
    path: str  # relative to the DVC repository
    remote: str
    git_revision: str | None


@dataclass(frozen=True)
class DVCRepo:
    root: Path
    executable: str
    remote_url: str
    versions_dir: Path  # inside root: where exported versions are tracked
    # An s3:// remote on an S3-compatible store (MinIO): host:port, plain HTTP, or https://host:port. Empty: AWS S3
    # itself (or a remote of another kind). Credentials come from the AWS_* variables of the environment.
    s3_endpoint: str = ""

    def version_path(self, asset: str, partition: str | None) -> Path:
        """``<asset>/<partition>.parquet``; an unpartitioned asset's file is named after it: ``flights/training_set``
        -> ``flights/training_set/training_set.parquet``."""
        return self.versions_dir / asset / f"{partition or Path(asset).name}.parquet"

    def run(self, *args: str) -> str:
        command = [self.executable, "--wait-for-lock", *args]
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        try:
            done = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise DVCError(f"the dvc program was not found at {self.executable!r}: run `make install`") from None
        if done.returncode:
            said = (done.stderr or done.stdout).strip()
            # The arguments may hold the remote's URL, DVC's answer too: no password of either goes into the error.
            raise DVCError(redact(f"`dvc {' '.join(args)}` failed in {self.root} (exit {done.returncode}): {said}"))
        return done.stdout

    @property
    def in_git(self) -> bool:
        return _git(self.root, "rev-parse", "--show-toplevel") is not None

    def ensure_initialised(self) -> None:
        """``dvc init`` (inside git when the repository is one) with the default remote and its S3 endpoint, once;
        later calls change the configuration only where it differs."""
        # Steps on several workers share one repository: without the lock, two first steps both find no .dvc
        # and the second `dvc init` fails. The lock file sits in the versions folder, which git does not see.
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with (self.versions_dir / INIT_LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._initialise()

    def _initialise(self) -> None:
        if not (self.root / ".dvc").is_dir():
            self.run("init", "--quiet", *(() if self.in_git else ("--no-scm",)))
            self.run("config", "core.analytics", "false")
        # The remote is machine-local configuration (.dvc/config.local, which DVC keeps out of git).
        local = self._local_config()
        if local.get("remote.default.url") != self.remote_url:
            # --force replaces the whole remote section, its endpointurl included.
            self.run("remote", "add", "--local", "--default", "--force", "default", self.remote_url)
            local.pop("remote.default.endpointurl", None)
        endpoint = endpoint_url(self.s3_endpoint) if self.s3_endpoint else None
        if local.get("remote.default.endpointurl") != endpoint:
            if endpoint:
                self.run("remote", "modify", "--local", "default", "endpointurl", endpoint)
            else:
                self.run("remote", "modify", "--local", "--unset", "default", "endpointurl")

    def _local_config(self) -> dict[str, str]:
        """``.dvc/config.local`` as DVC lists it, ``{"remote.default.url": ...}``."""
        listed = self.run("config", "--local", "--list").splitlines()
        return dict(line.split("=", 1) for line in listed if "=" in line)

    def track(self, path: Path) -> Version:
        """Record ``path``'s current bytes in the cache and the remote; returns that version."""
        return self.track_all([path])[0]

    def track_all(self, paths: list[Path]) -> list[Version]:
        """:meth:`track` for several paths, with one ``dvc add`` and one ``dvc push`` for all of them."""
        if not paths:
            return []
        self.ensure_initialised()
        relative = [path.resolve().relative_to(self.root.resolve()) for path in paths]
        for path in relative:
            _drop_torn_pointer(self.root / f"{path}.dvc")
        self.run("add", "--quiet", *map(str, relative))
        self.run("push", "--quiet", *(f"{path}.dvc" for path in relative))
        # The remote goes into metadata: a URL's password (an http remote's) stays out.
        remote, revision = redact(self.remote_url), git_revision(self.root)
        return [
            Version(md5=read_md5(self.root / f"{path}.dvc"), path=path.as_posix(), remote=remote, git_revision=revision)
            for path in relative
        ]

    def check_out(self, versions: dict[Path, str]) -> None:
        """Put each version (path -> md5) at its path with a ``.dvc`` file naming it, from the cache or, with one
        ``dvc pull`` for all of them, the remote; then check every file against its version."""
        self.ensure_initialised()
        pointers = []
        for path, md5 in versions.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            pointer = Path(f"{path}.dvc")  # DVC's own name: x.parquet.dvc, model.dvc
            pointer.write_text(_pointer(md5, path.name))
            pointers.append(str(pointer.resolve().relative_to(self.root.resolve())))
        if pointers:
            self.run("pull", "--quiet", "--force", *pointers)
        cache_dir = self._cache_dir() if any(md5.endswith(".dir") for md5 in versions.values()) else None
        wrong = [
            str(path)
            for path, md5 in versions.items()
            if not _matches(path, md5, cache_dir if md5.endswith(".dir") else None)
        ]
        if wrong:
            raise DVCError(f"{len(wrong)} checked-out versions do not match their md5: {', '.join(wrong[:5])}")

    def missing_from_remote(self, md5s: set[str]) -> list[str]:
        """Which of ``md5s`` the remote lacks, after pushing those the cache has (``dvc push`` leaves out, with a mere
        warning, what neither the cache nor the remote holds)."""
        if not md5s:
            return []
        self.ensure_initialised()
        pins = self.versions_dir / CHECK_FOLDER
        pins.mkdir(parents=True, exist_ok=True)
        for md5 in md5s:
            (pins / f"{md5}.dvc").write_text(_pointer(md5, md5))
        try:
            targets = [str((pins / f"{md5}.dvc").resolve().relative_to(self.root.resolve())) for md5 in sorted(md5s)]
            self.run("push", "--quiet", *targets)
            # Entries are `"<pin's out>": "new" | "missing" | "deleted"`; "deleted" means only the cache lacks it.
            status = json.loads(self.run("status", "--cloud", "--json", *targets) or "{}")
        finally:
            shutil.rmtree(pins)
        return sorted(Path(out).name for out, state in status.items() if state != "deleted")

    def record_stage(self, stage: str) -> bool:
        """Record a dvc.yaml stage as run (``dvc commit``), when the repository has a dvc.yaml.

        Inside ``dvc repro`` (which sets ``DVC_STAGE``) DVC records the stage itself.
        """
        pipeline = self.root / "dvc.yaml"
        if not pipeline.exists() or "DVC_STAGE" in os.environ:
            return False
        if stage.split("@")[0] not in (yaml.safe_load(pipeline.read_text()) or {}).get("stages", {}):
            return False  # a dataset dvc.yaml does not mirror
        self.ensure_initialised()
        self.run("commit", "--force", "--quiet", stage)
        return True

    def collect_garbage(self, keep: set[str], cloud: bool = False) -> None:
        """``dvc gc`` that keeps, beside what the workspace uses, every version in ``keep``.

        Plain ``dvc gc --workspace`` only knows the .dvc files in the workspace, so it would delete every
        earlier version the Dagster event log still points at. Each kept md5 is pinned for the duration of
        the collection by a .dvc file that references it.
        """
        self.ensure_initialised()
        pins = self.versions_dir / KEEP_FOLDER
        pins.mkdir(parents=True, exist_ok=True)
        for md5 in keep:
            (pins / f"{md5}.dvc").write_text(_pointer(md5, md5))
        try:
            self.run("gc", "--workspace", "--force", *(["--cloud"] if cloud else []))
        finally:
            shutil.rmtree(pins)

    def restore(self, md5: str, name: str) -> Path:
        """Bring back the bytes of version ``md5`` from the cache or, failing that, the remote."""
        # Both become a path: an md5 from a record or a command line is checked to be one, the name to be a plain name.
        if not MD5.fullmatch(md5) or name in ("", ".", "..") or Path(name).name != name:
            raise DVCError(f"cannot restore {name!r} version {md5!r}: a version is a DVC md5 and a plain file name")
        self.ensure_initialised()
        folder = self.versions_dir / RESTORE_FOLDER / md5
        folder.mkdir(parents=True, exist_ok=True)
        pointer = folder / f"{name}.dvc"
        pointer.write_text(_pointer(md5, name))
        restored = folder / name
        cache_dir = self._cache_dir() if md5.endswith(".dir") else None  # a folder is checked against its listing
        if not _matches(restored, md5, cache_dir):
            self.run("pull", "--quiet", "--force", str(pointer.relative_to(self.root)))
        if not _matches(restored, md5, cache_dir):
            raise DVCError(f"restored {restored} does not match version {md5}")
        return restored

    def _cache_dir(self) -> Path:
        return Path(self.run("cache", "dir").strip())


def _matches(path: Path, md5: str, cache_dir: Path | None) -> bool:
    """Whether ``path`` holds version ``md5``: a file's own md5, or for a folder (``<md5>.dir``, with DVC's
    cache at ``cache_dir``) every file that DVC's listing of the folder names, with its md5."""
    if cache_dir is None:
        return path.is_file() and file_md5(path) == md5
    listing = cache_dir / "files" / "md5" / md5[:2] / md5[2:]
    if not path.is_dir() or not listing.is_file():
        return False
    entries = json.loads(listing.read_text())
    return all(
        (path / entry["relpath"]).is_file() and file_md5(path / entry["relpath"]) == entry["md5"] for entry in entries
    )


def _pointer(md5: str, name: str) -> str:
    """A .dvc file's text naming one version by its md5."""
    return yaml.safe_dump({"outs": [{"md5": md5, "hash": "md5", "path": name}]})


def _drop_torn_pointer(dvc_file: Path) -> None:
    """Remove a ``.dvc`` file that a killed ``dvc add`` left half written: DVC writes it in place and then refuses to
    read it (``validation failed``). ``dvc add`` writes it again whole."""
    try:
        out = yaml.safe_load(dvc_file.read_text())["outs"][0]
        # DVC writes the path last: a file cut short lacks it or has it cut.
        if MD5.fullmatch(str(out["md5"])) and out["path"] == dvc_file.name.removesuffix(".dvc"):
            return
    except FileNotFoundError:
        return
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        pass
    dvc_file.unlink()


def read_md5(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


def file_md5(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def git_revision(root: Path) -> str | None:
    """The commit checked out in ``root``, when it is a git repository with one."""
    return _git(root, "rev-parse", "HEAD")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def export_table(con: duckdb.DuckDBPyConnection, table: str, month: str | None, target: Path) -> Path:
    """Write ``table`` (one month of it, if given) as Parquet with deterministic bytes: same rows, same md5.

    Rows are sorted on every column, so neither insertion order nor DuckDB's threads change the file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    where = f"WHERE period = {sql_string(month)}" if month else ""
    query = f"SELECT * FROM {table} {where} ORDER BY ALL"
    con.execute(f"COPY ({query}) TO {sql_string(scratch)} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(scratch, target)
    return target
