"""Real servers for the production profile's tests: a throwaway PostgreSQL (DuckLake's catalog) and moto's S3
server (DuckLake's data files), each started once per session on a free port of 127.0.0.1 and stopped afterwards.

A server that cannot start skips its tests with how to install it, except in CI (``CI=true``), where that fails:
CI installs PostgreSQL (.ci/run) and the lock installs moto.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlplatform.data.lake import LakeSettings

POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_HINT = "install PostgreSQL's server (Debian: apt-get install postgresql)"
MOTO_HINT = "install moto's S3 server: pip install -r requirements.lock (moto[server])"
BUCKET = "lake"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def unavailable(message: str) -> None:
    """Skip, or fail in CI: there a missing server is a broken set-up, not a reason to test less."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin (newest first), else PATH."""
    candidates = sorted(
        POSTGRES_ROOT.glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    return next((path for path in candidates if (path / "initdb").exists() and (path / "pg_ctl").exists()), None)


@dataclass(frozen=True)
class Postgres:
    bin: Path
    port: int
    user: str = "postgres"

    def libpq(self, database: str) -> str:
        return f"dbname={database} host=127.0.0.1 port={self.port} user={self.user}"

    def create_database(self, prefix: str = "lake") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return name


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own (trust authentication, fsync off), run by the `postgres` user when the tests
    run as root (pg_ctl refuses root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable(f"no PostgreSQL server (initdb, pg_ctl) under {POSTGRES_ROOT}/*/bin or on PATH: {POSTGRES_HINT}")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode:
            unavailable(f"running as root, PostgreSQL needs the `postgres` user and runuser: {POSTGRES_HINT}")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's temp folder: that is private to the user running the tests, and postgres must reach it.
    root = Path(tempfile.mkdtemp(prefix="mlplatform-postgres-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    log = root / "server.log"
    settings = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", settings, "-w", "-t", "60", "start"]
        steps = ([*as_user, *initdb, "-E", "UTF8"], [*as_user, *start])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=120)
            if done.returncode:
                server_log = log.read_text()[-2000:] if log.exists() else ""
                program = Path(step[len(as_user)]).name
                unavailable(f"PostgreSQL did not start ({program} failed): {done.stderr[-2000:]}{server_log}")
        yield Postgres(bin_dir, port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def aws_environment() -> Iterator[dict[str, str]]:
    """Test credentials in the environment, as production passes real ones (child processes inherit them)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield AWS_ENV


@pytest.fixture(scope="session")
def s3(aws_environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server with the bucket `lake`; yields its endpoint, host:port."""
    program = moto_server()
    if program is None:
        unavailable(f"moto_server is not installed: {MOTO_HINT}")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [program, "-H", "127.0.0.1", "-p", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        if not wait_for_port(port, process):
            unavailable(f"moto's S3 server did not start: {log.read_text()[-2000:]}")
        import boto3

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=AWS_ENV["AWS_REGION"])
        client.create_bucket(Bucket=BUCKET)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def extension_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extension folder for the session: the extensions are installed into it from their wheels once."""
    return tmp_path_factory.mktemp("duckdb_extensions")


@pytest.fixture
def lake_settings(postgres: Postgres, s3: str, extension_directory: Path) -> LakeSettings:
    """A new, empty DuckLake: its own catalog database, its own prefix in the bucket."""
    database = postgres.create_database()
    return LakeSettings(
        catalog=postgres.libpq(database),
        data_path=f"s3://{BUCKET}/{database}/",
        s3_endpoint=s3,
        extension_directory=str(extension_directory),
    )
