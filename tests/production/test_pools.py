"""`mlplatform pools` on the production instance (deploy/dagster.production.yaml on a real PostgreSQL): why it exists
(two first claims of one new pool at once fail one of them) and what it does (each pool at the default limit,
created one after another; a limit set by hand is kept)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import sqlalchemy.exc

from mlplatform.cli import main
from mlplatform.orchestration.assets.common import DUCKDB_POOL, DVC_POOL
from production.servers import Postgres
from production.topology import install_instance

DEFAULT_LIMIT = 4  # deploy/dagster.production.yaml, concurrency.pools.default_limit


@pytest.fixture
def instance_env(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A new Dagster database, migrated, and the production dagster.yaml as the instance."""
    home = tmp_path / "dagster_home"
    install_instance(home)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": postgres.create_database("dagster"),
        "DAGSTER_COMPUTE_LOGS_DIR": str(tmp_path / "compute_logs"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    subprocess.run([str(Path(sys.executable).with_name("dagster")), "instance", "migrate"], check=True, timeout=300)
    return env


@pytest.fixture
def instance(instance_env) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as opened:
        yield opened


def test_two_first_claims_of_one_new_pool_at_once_fail_one_of_them(instance, instance_env, postgres: Postgres):
    """Dagster 1.13 on PostgreSQL: the second INSERT of a pool's limit waits on the first, then its unique-key
    violation aborts the transaction its fallback UPDATE runs in. When Dagster fixes that, this test fails and
    `mlplatform pools` can go."""
    first = psycopg2.connect(postgres.libpq(instance_env["DAGSTER_PG_DB"]))
    cursor = first.cursor()  # psycopg2 opens a transaction: the row stays uncommitted until commit()
    cursor.execute(
        'INSERT INTO concurrency_limits (concurrency_key, "limit", using_default_limit) VALUES (%s, %s, true)',
        [DVC_POOL, DEFAULT_LIMIT],
    )
    raised: list[BaseException] = []

    def second_claim() -> None:
        try:
            instance.event_log_storage.initialize_concurrency_limit_to_default(DVC_POOL)
        except Exception as error:  # the error is what is under test
            raised.append(error)

    racing = threading.Thread(target=second_claim)
    racing.start()
    racing.join(timeout=3)
    assert racing.is_alive()  # waiting on the first INSERT's row
    first.commit()
    first.close()
    racing.join(timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], sqlalchemy.exc.InternalError), raised
    assert "InFailedSqlTransaction" in str(raised[0])


def test_pools_creates_each_pool_at_the_default_and_keeps_a_limit_set_by_hand(instance, instance_env, capsys):
    storage = instance.event_log_storage
    assert not storage.get_concurrency_keys() & {DUCKDB_POOL, DVC_POOL}
    # The command a deployment runs (deploy/compose.yaml's instance-migrate runs it as a program: see topology.py).
    assert main(["pools"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{DUCKDB_POOL}: {DEFAULT_LIMIT} slots",
        f"{DVC_POOL}: {DEFAULT_LIMIT} slots",
    ]
    info = storage.get_concurrency_info(DVC_POOL)
    assert info.using_default_limit and info.slot_count == DEFAULT_LIMIT
    # A step's claim now finds its pool at the default and creates nothing: no first claim left to race.
    storage.set_concurrency_slots(DVC_POOL, 2)
    assert main(["pools"]) == 0
    assert f"{DVC_POOL}: 2 slots" in capsys.readouterr().out.splitlines()
    assert storage.get_concurrency_info(DVC_POOL).slot_count == 2
