"""Where the warehouse's tables live: an embedded DuckDB file (one machine, one writer at a time) or a DuckLake
(catalog in PostgreSQL, data files in S3), which many processes on many machines write at once.

The platform's SQL is the same on both. DuckLake's extensions come from PyPI wheels
(``duckdb-extension-ducklake``, ``-postgres``, ``-httpfs``, pinned to DuckDB's own version in requirements.lock)
and are installed from those files into a project-local extension folder, so nothing is downloaded from DuckDB's
extension repository at run time.

DuckLake checks for conflicts when a transaction commits: two writers that both delete from (replace part of) one
table conflict, and the later one fails with ``TransactionException: ... Transaction conflict``. Every write of the
platform is a whole transaction that can simply run again, so :func:`retry_on_conflict` re-runs it.
"""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import duckdb

from mlplatform.data.sql import sql_string
from mlplatform.logs import get_logger, redact
from mlplatform.settings import Paths

T = TypeVar("T")

# ducklake needs postgres (its catalog) and httpfs (its data files on S3).
EXTENSIONS = ("httpfs", "postgres", "ducklake")
LAKE_ALIAS = "lake"
EXTENSION_DIR_NAME = "duckdb_extensions"
S3_SECRET = "mlplatform_s3"
# A conflict costs one re-run of a transaction of a few seconds at most; 8 attempts with 0.1 s doubling back-off
# wait about 13 s in all before giving up, enough for a handful of writers of one table at once.
DEFAULT_ATTEMPTS = 8
DEFAULT_BACKOFF_SECONDS = 0.1


class LakeError(Exception):
    """DuckLake cannot be reached or set up (a missing extension wheel, a bad setting)."""


@dataclass(frozen=True)
class LakeSettings:
    """Where a DuckLake lives.

    ``catalog``: a libpq connection string for the PostgreSQL catalog (``dbname=lake host=... user=...``); a value
    starting with ``ducklake:`` is attached as it is (``ducklake:/path/metadata.ducklake``: a DuckDB-file catalog).
    ``data_path``: where the data files go, ``s3://bucket/prefix/`` or a folder.
    ``s3_endpoint``: ``host:port`` of an S3-compatible store (MinIO), plain HTTP; ``https://host:port`` for TLS;
    empty for AWS S3 itself. Credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
    ``AWS_SESSION_TOKEN``), the region from ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``).
    ``extension_directory``: where DuckDB's extensions are installed; empty: ``$MLPLATFORM_DATA_DIR/duckdb_extensions``.
    """

    catalog: str
    data_path: str
    s3_endpoint: str = ""
    extension_directory: str = ""

    def __post_init__(self) -> None:
        if not self.catalog.strip():
            raise LakeError("a DuckLake needs its catalog: a libpq connection string such as 'dbname=lake host=...'")
        if not self.data_path.strip():
            raise LakeError("a DuckLake needs its data path, such as 's3://bucket/lake/'")


def connect(
    database: str = ":memory:", *, lake: LakeSettings | None = None, config: dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse: the embedded DuckDB file ``database``, or, given ``lake``, the DuckLake
    (``database`` is then unused) with the lake as the default catalog, so ``"flights"."raw_flights"`` and the
    registry's unqualified tables resolve inside it."""
    if lake is None:
        return duckdb.connect(database, config=dict(config or {}))
    return connect_lake(lake, config)


def connect_lake(settings: LakeSettings, config: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    directory = Path(settings.extension_directory or default_extension_directory())
    connection_config = {
        "extension_directory": str(directory),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        **(config or {}),
    }
    con = duckdb.connect(":memory:", config=connection_config)
    try:
        install_extensions(con, directory)
        if settings.data_path.startswith("s3://") or settings.s3_endpoint:
            create_s3_secret(con, settings.s3_endpoint)
        catalog = (
            settings.catalog if settings.catalog.startswith("ducklake:") else f"ducklake:postgres:{settings.catalog}"
        )
        failure = None
        try:
            con.execute(f"ATTACH {sql_string(catalog)} AS {LAKE_ALIAS} (DATA_PATH {sql_string(settings.data_path)})")
        except duckdb.Error as error:
            failure = type(error)(redact(str(error)))
        if failure is not None:
            # DuckDB's message repeats the connection string: raised anew, outside the handler, so that neither the
            # message nor a chained original carries its password into run logs.
            raise failure
        con.execute(f"USE {LAKE_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def default_extension_directory() -> Path:
    return Paths.from_env().data_dir / EXTENSION_DIR_NAME


def wheel_extension(name: str) -> Path:
    """The extension file shipped by the ``duckdb-extension-<name>`` wheel for the installed DuckDB."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise LakeError(f"DuckDB's {name} extension is not installed: pip install {_wheel(name)}")
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in path.parent.parent.glob("v*")) if path.parent.parent.is_dir() else []
        raise LakeError(
            f"{package} has no extension for DuckDB {duckdb.__version__} (it has {found or 'none'}): "
            f"pip install {_wheel(name)}"
        )
    return path


def install_extensions(con: duckdb.DuckDBPyConnection, directory: Path) -> None:
    """Install (once: INSTALL does nothing when the extension is there) and load DuckLake's extensions from the
    wheels. Where ``directory`` cannot be written (a read-only image), a folder of the user's in the temp folder
    is used instead."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _install_and_load(con)
    except (OSError, duckdb.IOException, duckdb.PermissionException) as error:
        fallback = Path(tempfile.gettempdir()) / f"mlplatform-{EXTENSION_DIR_NAME}-{os.getuid()}"
        get_logger().warning("duckdb_extension_directory_fallback", wanted=str(directory), used=str(fallback),
                             error=str(error).strip().splitlines()[0])  # fmt: skip
        fallback.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET extension_directory = {sql_string(fallback)}")
        _install_and_load(con)


def _install_and_load(con: duckdb.DuckDBPyConnection) -> None:
    for name in EXTENSIONS:
        con.execute(f"INSTALL {sql_string(wheel_extension(name))}")
        con.execute(f"LOAD {name}")


def create_s3_secret(con: duckdb.DuckDBPyConnection, endpoint: str = "") -> None:
    """A session-only S3 secret from the AWS variables of the environment; ``endpoint`` as in :class:`LakeSettings`."""
    options = {"TYPE": "s3", "PROVIDER": "config"}
    for option, variables in (
        ("KEY_ID", ("AWS_ACCESS_KEY_ID",)),
        ("SECRET", ("AWS_SECRET_ACCESS_KEY",)),
        ("SESSION_TOKEN", ("AWS_SESSION_TOKEN",)),
        ("REGION", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ):
        value = next((os.environ[v] for v in variables if os.environ.get(v)), "")
        if value:
            options[option] = value
    if endpoint:
        host, use_ssl = parse_endpoint(endpoint)
        options |= {"ENDPOINT": host, "URL_STYLE": "path", "USE_SSL": use_ssl}
    body = ", ".join(
        f"{key} {value if isinstance(value, bool) or key in ('TYPE', 'PROVIDER') else sql_string(value)}"
        for key, value in options.items()
    )
    con.execute(f"CREATE OR REPLACE SECRET {S3_SECRET} ({body})")


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """``(host:port, use_ssl)`` of an S3 endpoint: TLS only when it says ``https://``."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
        raise LakeError(f"the S3 endpoint must be host:port (or http(s)://host:port), not {endpoint!r}")
    return parts.netloc, parts.scheme == "https"


def endpoint_url(endpoint: str) -> str:
    """The URL of an S3 endpoint, ``http://host:port`` (``https://`` only when it says so), as boto-based clients
    (DVC's s3 remote, ``endpointurl``) take it."""
    host, use_ssl = parse_endpoint(endpoint)
    return f"{'https' if use_ssl else 'http'}://{host}"


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a write-write conflict, which running the whole transaction again resolves: DuckLake's
    ``Transaction conflict`` at commit (or an embedded DuckDB's conflict between two connections)."""
    return isinstance(error, duckdb.TransactionException) and "conflict" in str(error).lower()


def retry_on_conflict(
    fn: Callable[[], T], attempts: int = DEFAULT_ATTEMPTS, backoff: float = DEFAULT_BACKOFF_SECONDS
) -> T:
    """Call ``fn`` (a whole transaction: BEGIN to COMMIT, nothing half-done before it) until it does not fail with a
    conflict, at most ``attempts`` times, waiting ``backoff`` seconds doubled each time, with jitter, in between.
    Any other error, and the last conflict, is raised."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except duckdb.TransactionException as error:
            if attempt == attempts or not is_conflict(error):
                raise
            delay = backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            get_logger().warning(
                "warehouse_conflict_retry",
                attempt=attempt,
                attempts=attempts,
                delay_s=round(delay, 3),
                error=str(error).strip().splitlines()[-1],
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _wheel(name: str) -> str:
    return f"duckdb-extension-{name}=={duckdb.__version__}"
