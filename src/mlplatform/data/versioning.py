"""Data versions with DVC, driven through its command line.

DVC lives in its own environment (its hydra-core pins an antlr runtime that breaks Dagster's asset-selection
parser), so the platform never imports it: every call goes through :class:`DVCRepo`, which runs the ``dvc``
program with ``--wait-for-lock`` and analytics off, and turns a failure into :class:`DVCError` quoting DVC.

Tracking a file is the exception: starting DVC costs about a second, and a materialization versions dozens of
files. So :meth:`DVCRepo.track_all` does what ``dvc add`` and a push to a local remote do for a plain file itself,
under DVC's own repository lock, writing what DVC writes (the object, the ``.dvc`` file, the ``.gitignore`` entry),
whenever DVC's configuration and the file's place in the repository are ones it reproduces; otherwise it runs DVC.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
OBJECTS = Path("files", "md5")  # DVC 3's objects in a cache or a local remote: files/md5/ab/cdef...
OBJECT_MODE = 0o444  # DVC makes every object of a local cache or remote read-only (and then trusts it unhashed)
URL_SCHEME = re.compile(r"\w+://")  # DVC's test for a remote that is not a local folder


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
        with _exclusive(self.versions_dir / INIT_LOCK):
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
        """``.dvc/config.local`` as DVC lists it, ``{"remote.default.url": ...}``: read from the file (no DVC process),
        or listed by DVC when the file holds what :func:`_read_config` does not follow."""
        local = _read_config(self.root / ".dvc" / "config.local")
        if local is None:
            listed = self.run("config", "--local", "--list").splitlines()
            return dict(line.split("=", 1) for line in listed if "=" in line)
        return {f"remote.default.{key}": value for key, value in local["remote"].get("default", {}).items()}

    def track(self, path: Path) -> Version:
        """Record ``path``'s current bytes in the cache and the remote; returns that version."""
        return self.track_all([path])[0]

    def track_all(self, paths: list[Path]) -> list[Version]:
        """:meth:`track` for several paths: plain files as :meth:`_add_file` adds them, the others (folders, files
        DVC's configuration or the repository's layout puts beyond it) with one ``dvc add``; then one ``dvc push``
        for whatever the remote still lacks (all of it, when the remote is not a local folder)."""
        if not paths:
            return []
        self.ensure_initialised()
        relative = [path.resolve().relative_to(self.root.resolve()) for path in paths]
        for path in relative:
            _drop_torn_pointer(self.root / f"{path}.dvc")
        store = _store(self.root)
        quick = self._addable_files(relative, store) if store else []
        slow = [path for path in relative if path not in quick]
        if quick:
            with self._dvc_lock():
                if store.git:
                    _ignore_in_git(self.root, quick)
                for path in quick:
                    self._add_file(self.root / path, store)
        if slow:
            self.run("add", "--quiet", *map(str, slow))
        unpushed = slow + (quick if store is None or store.remote is None else [])
        if unpushed:
            self.run("push", "--quiet", *(f"{path}.dvc" for path in unpushed))
        # The remote goes into metadata: a URL's password (an http remote's) stays out.
        remote, revision = redact(self.remote_url), git_revision(self.root)
        return [
            Version(md5=read_md5(self.root / f"{path}.dvc"), path=path.as_posix(), remote=remote, git_revision=revision)
            for path in relative
        ]

    def _addable_files(self, relative: list[Path], store: _Store) -> list[Path]:
        """Those of ``relative`` that :meth:`_add_file` adds as ``dvc add`` would: plain files (not links, not
        executable) with a plain name, whose ``.dvc`` file is missing or one this module writes, that no ``.dvc``
        file, dvc.yaml or .dvcignore on their way from the root may claim, and that git does not track. Whatever
        DVC would refuse or write differently is left to DVC."""
        addable = [path for path in relative if _plain_file(self.root / path) and not _claimed(self.root, path)]
        if store.git and addable:
            # DVC refuses to add a file git tracks; `dvc add` says so.
            listed = _git(self.root, "ls-files", "-z", "--", *map(str, addable))
            if listed is None:
                return []
            tracked = {Path(name) for name in listed.split("\0") if name}
            addable = [path for path in addable if path not in tracked]
        return addable

    def _add_file(self, path: Path, store: _Store) -> None:
        """``dvc add path`` for a plain file, then ``dvc push`` when the remote is a local folder.

        DVC 3 names a file by the md5 of its bytes and keeps it in the cache as a read-only copy at
        ``files/md5/<2>/<30>`` (with the default cache type, reflink or copy, the workspace keeps its own copy);
        the ``.dvc`` file names the object, its size and the hash, in DVC's order. A local remote has the cache's
        layout. Called under :meth:`_dvc_lock`, after :func:`_ignore_in_git`.
        """
        md5 = file_md5(path)
        cached = store.cache / OBJECTS / md5[:2] / md5[2:]
        _store_object(path, cached, md5)
        if store.remote is not None:
            _store_object(cached, store.remote / OBJECTS / md5[:2] / md5[2:], md5)
        pointer = Path(f"{path}.dvc")
        scratch = pointer.with_name(f"{pointer.name}.{uuid.uuid4().hex}.tmp")
        scratch.write_text(f"outs:\n- md5: {md5}\n  size: {cached.stat().st_size}\n  hash: md5\n  path: {path.name}\n")
        os.replace(scratch, pointer)

    @contextmanager
    def _dvc_lock(self) -> Iterator[None]:
        """DVC's repository lock (an flock on .dvc/tmp/lock, which every DVC command holds while it runs): no
        ``dvc gc`` collects an object between its copy and its ``.dvc`` file, no other add or push interleaves."""
        path = self.root / ".dvc" / "tmp" / "lock"
        path.parent.mkdir(exist_ok=True)
        with _exclusive(path):
            yield

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

    def record_stages(self, stages: list[str]) -> bool:
        """Record dvc.yaml stages as run, with one ``dvc commit`` for all of them, when the repository has a
        dvc.yaml; whether any was. Stages of a dataset dvc.yaml does not mirror are left out.

        Inside ``dvc repro`` (which sets ``DVC_STAGE``) DVC records the stage itself.
        """
        pipeline = self.root / "dvc.yaml"
        if not stages or not pipeline.exists() or "DVC_STAGE" in os.environ:
            return False
        declared = (yaml.safe_load(pipeline.read_text()) or {}).get("stages", {})
        mirrored = [stage for stage in stages if stage.split("@")[0] in declared]
        if not mirrored:
            return False
        self.ensure_initialised()
        self.run("commit", "--force", "--quiet", *mirrored)
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
        config = _dvc_config(self.root)
        if config is None:
            return Path(self.run("cache", "dir").strip())
        return Path(config["cache"].get("dir") or self.root / ".dvc" / "cache")


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created when missing) while the block runs."""
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class _Store:
    """Where :meth:`DVCRepo._add_file` puts a file, when DVC's configuration leaves nothing to DVC itself."""

    cache: Path  # a local cache that copies (cache.type reflink or copy, not shared)
    remote: Path | None  # a local remote's folder; None: a remote that only `dvc push` reaches
    git: bool  # DVC works inside git, and so keeps .gitignore entries


def _store(root: Path) -> _Store | None:
    """The :class:`_Store` of the DVC repository at ``root``; None when its configuration asks for what only DVC
    does: links from the cache (hard or symbolic links would make the workspace file the cache's object), a
    shared cache, autostaging in git, a hardlink lock, or no default remote (``dvc push`` says so)."""
    config = _dvc_config(root)
    if config is None:
        return None
    core, cache = config["core"], config["cache"]
    types = cache.get("type", "reflink,copy")
    types = {kind.strip() for kind in types.split(",")} if isinstance(types, str) else set(types)
    if not types <= {"reflink", "copy"} or "copy" not in types or cache.get("shared"):
        return None
    if _true(core.get("autostage")) or _true(core.get("hardlink_lock")):
        return None
    remote = config["remote"].get(str(core.get("remote", "")).lower())
    if remote is None or not isinstance(remote.get("url"), str):
        return None
    local = not URL_SCHEME.match(remote["url"]) and not remote.get("shared")
    return _Store(
        cache=Path(cache.get("dir") or root / ".dvc" / "cache"),
        remote=Path(remote["url"]) if local else None,
        git=not _true(core.get("no_scm")),
    )


def _true(value: object) -> bool:
    return str(value).lower() == "true"


def _dvc_config(root: Path) -> dict | None:
    """DVC's configuration of the repository at ``root``, merged as DVC merges it (system, global, repository,
    local: the later wins), with its local paths (cache.dir, a remote's url) made absolute against their file's
    folder as DVC makes them; None when a file holds what :func:`_read_config` does not follow, and off Linux."""
    files = _config_files(root / ".dvc")
    if files is None:
        return None
    merged: dict = {"core": {}, "cache": {}, "remote": {}}
    for file in files:
        config = _read_config(file)
        if config is None:
            return None
        _merge(merged, config)
    return merged


def _config_files(dvc_dir: Path) -> list[Path] | None:
    """DVC's configuration files, the lowest precedence first, where DVC reads them on Linux (platformdirs' XDG
    folders, unless DVC_SYSTEM_CONFIG_DIR or DVC_GLOBAL_CONFIG_DIR say otherwise); None elsewhere."""
    if sys.platform != "linux":
        return None
    site = next((p for p in os.environ.get("XDG_CONFIG_DIRS", "").split(os.pathsep) if os.path.isabs(p)), "/etc/xdg")
    home = os.environ.get("XDG_CONFIG_HOME", "")
    user = home if os.path.isabs(home) else os.path.expanduser("~/.config")
    return [
        Path(os.environ.get("DVC_SYSTEM_CONFIG_DIR") or os.path.join(site, "dvc"), "config"),
        Path(os.environ.get("DVC_GLOBAL_CONFIG_DIR") or os.path.join(user, "dvc"), "config"),
        dvc_dir / "config",
        dvc_dir / "config.local",
    ]


def _config_path(folder: Path, value: str) -> str:
    """A path in a DVC configuration file as DVC reads it: a URL or an absolute path as written, ``~`` expanded,
    anything else relative to the file's folder."""
    if URL_SCHEME.match(value) or os.path.isabs(value):
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.abspath(folder / value)


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value


CONFIG_SECTION = re.compile(r"""\[\s*(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\]'"]*))\s*\]""")
NAMED_SECTION = re.compile(r'\s*(remote|machine|db)\s*"(.*)"\s*')  # DVC's named sections: remote "name"


def _read_config(path: Path) -> dict | None:
    """A DVC configuration file in configobj's INI dialect, as DVC loads it: keys and section names lowercased,
    ``['remote "name"']`` under ``remote`` by name, a value with commas a list, local paths (cache.dir, a remote's
    url) absolute; empty core, cache and remote sections when there is no file; None when it holds what this
    reader does not follow (nested sections, multi-line values, quoted list items), which DVC's reader reads."""
    config: dict = {"core": {}, "cache": {}, "remote": {}}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return config
    section = None
    for line in map(str.strip, lines):
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            header = CONFIG_SECTION.fullmatch(line)
            if header is None:
                return None
            name = (header["single"] or header["double"] or header["bare"] or "").strip().lower()
            named = NAMED_SECTION.fullmatch(name)
            parent = config.setdefault(named[1], {}) if named else config
            section = parent.setdefault(named[2] if named else name, {})
            continue
        key, equals, text = line.partition("=")
        value = _config_value(text.strip())
        if not equals or section is None or value is None:
            return None
        section[key.strip().lower()] = value
    for section, key in [(config["cache"], "dir"), *((remote, "url") for remote in config["remote"].values())]:
        if key in section:
            if not isinstance(section[key], str):
                return None
            section[key] = _config_path(path.parent, section[key])
    return config


def _config_value(text: str) -> str | list[str] | None:
    """One configobj value: quoted (no escapes), or bare up to a comment, a list when it holds commas."""
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        rest = text[end + 1 :].strip() if end > 0 else "#"
        if text.startswith(text[0] * 3) or end < 0 or (rest and not rest.startswith("#")):
            return None
        return text[1:end]
    value = text.split("#", 1)[0].strip()
    if any(quote in value for quote in "'\""):
        return None
    return [item.strip() for item in value.split(",") if item.strip()] if "," in value else value


def _plain_file(path: Path) -> bool:
    """A file ``dvc add`` records as :meth:`DVCRepo._add_file` does: a regular file with one name (DVC relinks a
    hard link) that is not executable (DVC records ``isexec``), named as YAML writes bare, whose ``.dvc`` file is
    missing or one this module writes (DVC keeps any other field)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_mode & 0o111:
        return False
    if not re.fullmatch(r"\w[\w.-]*", path.name) or yaml.safe_load(path.name) != path.name:
        return False
    try:
        recorded = yaml.safe_load(Path(f"{path}.dvc").read_text())
    except FileNotFoundError:
        return True
    except yaml.YAMLError:
        return False
    outs = recorded.get("outs") if isinstance(recorded, dict) else None
    return (
        set(recorded) == {"outs"}
        and isinstance(outs, list)
        and len(outs) == 1
        and isinstance(outs[0], dict)
        and set(outs[0]) <= {"md5", "size", "hash", "path"}
        and outs[0].get("hash") == "md5"
        and outs[0].get("path") == path.name
    )


def _claimed(root: Path, relative: Path) -> bool:
    """Whether something on the way from ``root`` to ``relative`` may claim the file, so that ``dvc add`` would
    refuse it: a ``.dvc`` file tracking a folder above it, a dvc.yaml declaring an output at or above it, a
    .dvcignore pattern that may ignore it. A doubt counts as a claim: DVC then decides."""
    parts = relative.parts
    for depth in range(len(parts)):
        folder, inside = root.joinpath(*parts[:depth]), PurePosixPath(*parts[depth:])
        if depth and Path(f"{folder}.dvc").exists():
            return True
        if any(_may_cover(output, inside) for output in _declared_outputs(folder / "dvc.yaml")):
            return True
        ignore = folder / ".dvcignore"
        if ignore.is_file() and any(_may_ignore(line, inside) for line in ignore.read_text().splitlines()):
            return True
    return False


def _declared_outputs(pipeline: Path) -> list[str]:
    """The outputs (outs, metrics, plots) a dvc.yaml's stages declare, relative to its folder; templated ones keep
    their ``${...}``; an unreadable file declares everything."""
    try:
        stages = (yaml.safe_load(pipeline.read_text()) or {}).get("stages") or {}
    except FileNotFoundError:
        return []
    except (yaml.YAMLError, AttributeError):
        return [""]
    outputs = []
    for stage in stages.values():
        if not isinstance(stage, dict):
            continue
        for body in (stage, stage.get("do") or {}):  # a foreach stage declares its outputs under do
            folder = str(body.get("wdir", stage.get("wdir", ".")))
            for entry in [entry for kind in ("outs", "metrics", "plots") for entry in body.get(kind) or []]:
                name = next(iter(entry)) if isinstance(entry, dict) else entry
                outputs.append(posixpath.normpath(posixpath.join(folder, str(name))))
    return outputs


def _may_cover(output: str, inside: PurePosixPath) -> bool:
    """Whether a declared output may be ``inside`` or a folder above it (of a templated one, only the fixed start
    is known; one outside the dvc.yaml's folder is a doubt)."""
    fixed = output.split("${")[0]
    if fixed != output or output.startswith(".."):
        return inside.as_posix().startswith(fixed) or output.startswith("..")
    return PurePosixPath(output) in (inside, *inside.parents)


def _may_ignore(line: str, inside: PurePosixPath) -> bool:
    """Whether a .dvcignore line (gitignore syntax) may ignore ``inside`` or a folder above it. Negations ignore
    nothing; wildcards are let cross folders, so the answer errs towards yes."""
    pattern = line.strip()
    if pattern.startswith(("#", "!")) or not pattern.rstrip("/"):
        return False
    pattern = pattern.rstrip("/")
    if "/" not in pattern:  # matches a name at any depth
        return any(fnmatch.fnmatchcase(part, pattern) for part in inside.parts)
    pattern = pattern.lstrip("/").replace("/**/", "/*")
    forms = {pattern, pattern.removeprefix("**/")}
    prefixes = [PurePosixPath(*inside.parts[: depth + 1]).as_posix() for depth in range(len(inside.parts))]
    return any(fnmatch.fnmatchcase(prefix, form) for prefix in prefixes for form in forms)


def _store_object(source: Path, target: Path, md5: str) -> None:
    """Put ``source``'s bytes at ``target`` in a DVC object store as DVC does: whole or not at all (written under a
    scratch name beside it, then renamed), read-only. An object already there is kept, made read-only again."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f"{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(source, scratch)
            # The bytes copied must be the version named: a file rewritten meanwhile is not recorded under it.
            if file_md5(scratch) != md5:
                raise DVCError(f"{source} changed while it was being versioned; nothing was recorded")
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)
    target.chmod(OBJECT_MODE)


def _ignore_in_git(root: Path, paths: list[Path]) -> None:
    """What DVC does inside git for each newly tracked file that git does not ignore yet: append ``/name`` to the
    .gitignore beside it, as scmrepo appends it (on a line of its own)."""
    done = subprocess.run(
        ["git", "check-ignore", "--stdin", "-z"],
        input="\0".join(map(str, paths)),
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):  # 1: none of them is ignored
        raise DVCError(f"git check-ignore failed in {root}: {done.stderr.strip()}")
    ignored = {Path(name) for name in done.stdout.split("\0") if name}
    for path in paths:
        if path in ignored:
            continue
        gitignore = root / path.parent / ".gitignore"
        with gitignore.open("a+", encoding="utf-8") as handle:
            size = handle.tell()
            handle.seek(max(size - 1, 0))
            separator = "" if size == 0 or handle.read(1) == "\n" else "\n"
            handle.write(f"{separator}/{path.name}\n")


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
