"""The instance's pools, created before any run needs them.

Dagster creates a pool's limit (at the instance's `concurrency.pools.default_limit`) when a step first asks for a
slot. On PostgreSQL, two runs doing that for the same new pool at the same moment fail one of them (Dagster 1.13:
the losing INSERT's unique-key violation aborts the transaction its fallback UPDATE then runs in, and the run
fails with `InFailedSqlTransaction`). A fresh production instance whose first two trainings start together met it
(tests/production/test_topology.py), so deployments create every pool once, one after another, right after
`dagster instance migrate` (`mlplatform pools`).
"""

from __future__ import annotations

import dagster as dg

from mlplatform.orchestration.assets.common import POOLS


def initialize_pools(instance: dg.DagsterInstance) -> dict[str, int]:
    """Each pool's slots once it exists: a pool without a limit gets the instance's default; a pool that has one
    (the default, or a limit set by hand with `dagster instance concurrency set`) keeps it. Without a default limit
    the instance leaves pools unlimited and there is nothing to create."""
    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is not None:
        existing = storage.get_concurrency_keys()
        for pool in POOLS:
            if pool not in existing:
                storage.initialize_concurrency_limit_to_default(pool)
    return {pool: storage.get_concurrency_info(pool).slot_count for pool in POOLS}
