"""Resources, chosen per environment by ``MLPLATFORM_ENV``.

``local`` (the default) needs no configuration: everything lives under ``MLPLATFORM_DATA_DIR``.
``production`` reads its locations from environment variables when a run starts (``dg.EnvVar``), so
secrets and paths never sit in code.
"""

from __future__ import annotations

import os

import dagster as dg

from mlplatform.orchestration.resources.alerts import AlertWebhook
from mlplatform.orchestration.resources.dvc import DVCResource, default_executable
from mlplatform.orchestration.resources.landing import LandingZone
from mlplatform.orchestration.resources.warehouse import Warehouse
from mlplatform.settings import Paths

ENVIRONMENT_ENV = "MLPLATFORM_ENV"
# Any DVC remote URL (s3://bucket/path, gs://..., a folder); locally it defaults to data/dvc-remote.
DVC_REMOTE_ENV = "MLPLATFORM_DVC_REMOTE_URL"
# Where run failure alerts are POSTed; locally optional (empty: the log event only).
ALERT_WEBHOOK_ENV = "MLPLATFORM_ALERT_WEBHOOK"
# Bounds DuckDB's own memory; larger work spills to disk instead of growing the process.
DUCKDB_MEMORY_LIMIT = "1GB"


def resources_for(environment: str | None = None) -> dict[str, dg.ConfigurableResource]:
    environment = environment or os.environ.get(ENVIRONMENT_ENV, "local")
    if environment == "local":
        paths = Paths.from_env()
        return {
            "duckdb": Warehouse(database=str(paths.warehouse), connection_config={"memory_limit": DUCKDB_MEMORY_LIMIT}),
            "landing": LandingZone(path=str(paths.landing_dir)),
            "dvc": DVCResource(
                repo_dir=str(paths.dvc_root),
                versions_dir=str(paths.versions_dir),
                remote_url=os.environ.get(DVC_REMOTE_ENV, str(paths.dvc_remote)),
                executable=default_executable(),
            ),
            "alerts": AlertWebhook(webhook_url=os.environ.get(ALERT_WEBHOOK_ENV, "")),
        }
    if environment == "production":
        return {
            "duckdb": Warehouse(
                database=dg.EnvVar("MLPLATFORM_DUCKDB_DATABASE"),
                connection_config={"memory_limit": DUCKDB_MEMORY_LIMIT},
            ),
            "landing": LandingZone(path=dg.EnvVar("MLPLATFORM_LANDING_DIR")),
            "dvc": DVCResource(
                repo_dir=dg.EnvVar("MLPLATFORM_DVC_REPO"),
                versions_dir=dg.EnvVar("MLPLATFORM_DVC_VERSIONS_DIR"),
                remote_url=dg.EnvVar(DVC_REMOTE_ENV),
                executable=default_executable(),
            ),
            "alerts": AlertWebhook(webhook_url=dg.EnvVar(ALERT_WEBHOOK_ENV)),
        }
    raise ValueError(f"{ENVIRONMENT_ENV} must be 'local' or 'production', not {environment!r}")
