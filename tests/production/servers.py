"""Throwaway servers on free ports of 127.0.0.1, as context managers: PostgreSQL (Dagster's instance, DuckLake's
catalog), Redis (Celery's broker) and moto's S3 server. The tests' fixtures (conftest.py) and the scale-out
benchmark (benchmarks/scale_out.py) both start them from here. A server that cannot start raises
``ServerUnavailable`` saying how to install it.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_HINT = "install PostgreSQL's server (Debian: apt-get install postgresql)"
REDIS_HINT = "install Redis's server (Debian: apt-get install redis-server)"
MOTO_HINT = "install moto's S3 server: pip install -r requirements.lock (moto[server])"
BUCKET = "lake"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerUnavailable(RuntimeError):
    """A server could not start here; the message says why and how to install it."""


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


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own (trust authentication, fsync off), run by the `postgres` user when this
    runs as root (pg_ctl refuses root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise ServerUnavailable(
            f"no PostgreSQL server (initdb, pg_ctl) under {POSTGRES_ROOT}/*/bin or on PATH: {POSTGRES_HINT}"
        )
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode:
            raise ServerUnavailable(
                f"running as root, PostgreSQL needs the `postgres` user and runuser: {POSTGRES_HINT}"
            )
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
                raise ServerUnavailable(
                    f"PostgreSQL did not start ({program} failed): {done.stderr[-2000:]}{server_log}"
                )
        yield Postgres(bin_dir, port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server of its own (no persistence); yields its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise ServerUnavailable(f"redis-server is not installed: {REDIS_HINT}")
    port = free_port()
    command = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (folder / "server.log").open("w") as output:
        process = subprocess.Popen([*command, "--dir", str(folder)], stdout=output, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port(port, process):
            raise ServerUnavailable(f"redis-server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(process)


def moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


@contextmanager
def s3_server(folder: Path) -> Iterator[str]:
    """moto's S3 server with the bucket `lake` (credentials: AWS_ENV, in the environment); yields host:port."""
    program = moto_server()
    if program is None:
        raise ServerUnavailable(f"moto_server is not installed: {MOTO_HINT}")
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [program, "-H", "127.0.0.1", "-p", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        if not wait_for_port(port, process):
            raise ServerUnavailable(f"moto's S3 server did not start: {log.read_text()[-2000:]}")
        import boto3

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=AWS_ENV["AWS_REGION"])
        client.create_bucket(Bucket=BUCKET)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
