"""Resources, chosen per environment by ``MLPLATFORM_ENV``.

``local`` (the default) needs no configuration: everything lives under ``MLPLATFORM_DATA_DIR``.
``production`` reads its locations from environment variables when a run starts (``dg.EnvVar``), so
secrets and paths never sit in code.
"""

from __future__ import annotations

import os

import dagster as dg

from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import Warehouse
from mlplatform.settings import Paths

ENVIRONMENT_ENV = "MLPLATFORM_ENV"
# Bounds DuckDB's own memory; larger work spills to disk instead of growing the process.
DUCKDB_MEMORY_LIMIT = "1GB"


def resources_for(environment: str | None = None) -> dict[str, dg.ConfigurableResource]:
    environment = environment or os.environ.get(ENVIRONMENT_ENV, "local")
    if environment == "local":
        paths = Paths.from_env()
        return {
            "duckdb": Warehouse(database=str(paths.warehouse), connection_config={"memory_limit": DUCKDB_MEMORY_LIMIT}),
            "landing": LandingZone(path=str(paths.landing_dir)),
        }
    if environment == "production":
        return {
            "duckdb": Warehouse(
                database=dg.EnvVar("MLPLATFORM_DUCKDB_DATABASE"),
                connection_config={"memory_limit": DUCKDB_MEMORY_LIMIT},
            ),
            "landing": LandingZone(path=dg.EnvVar("MLPLATFORM_LANDING_DIR")),
        }
    raise ValueError(f"{ENVIRONMENT_ENV} must be 'local' or 'production', not {environment!r}")
