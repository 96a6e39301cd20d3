"""Real servers for the production profile's tests (servers.py): a throwaway PostgreSQL (Dagster's instance,
DuckLake's catalog), Redis (Celery's broker) and moto's S3 server (DuckLake's data files, DVC's remote), each started
once per session on a free port of 127.0.0.1 and stopped afterwards.

A server that cannot start skips its tests with how to install it, except in CI (``CI=true``), where that fails:
CI installs PostgreSQL and Redis (.ci/run) and the lock installs moto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import pytest

from mlplatform.data.lake import LakeSettings
from production.servers import (
    AWS_ENV,
    BUCKET,
    Postgres,
    ServerUnavailable,
    postgres_server,
    redis_server,
    s3_server,
)

Server = TypeVar("Server")


def unavailable(message: str) -> None:
    """Skip, or fail in CI: there a missing server is a broken set-up, not a reason to test less."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def serve(server: AbstractContextManager[Server]) -> Iterator[Server]:
    try:
        with server as running:
            yield running
    except ServerUnavailable as missing:
        unavailable(str(missing))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    yield from serve(postgres_server())


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of its own, the Celery broker and result backend; yields its URL."""
    yield from serve(redis_server(tmp_path_factory.mktemp("redis")))


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
    yield from serve(s3_server(tmp_path_factory.mktemp("moto")))


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
