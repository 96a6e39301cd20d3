"""Resources, chosen per environment by ``MLPLATFORM_ENV``.

``local`` (the default) needs no configuration: everything lives under ``MLPLATFORM_DATA_DIR``.
``production`` reads its locations from environment variables when a run starts (``dg.EnvVar``), so
secrets and paths never sit in code. Its warehouse is a DuckLake (catalog in PostgreSQL, data files in S3), which
the steps of many runs write at once; S3 credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
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
# DuckLake: its catalog (a PostgreSQL libpq string), its data files (s3://bucket/prefix/) and the S3 endpoint
# (host:port of MinIO or another S3-compatible store; empty for AWS S3), which an s3:// DVC remote uses too.
LAKE_CATALOG_ENV = "MLPLATFORM_LAKE_CATALOG"
LAKE_DATA_PATH_ENV = "MLPLATFORM_LAKE_DATA_PATH"
S3_ENDPOINT_ENV = "MLPLATFORM_S3_ENDPOINT"
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
            # Through EnvVar when set: the UI then shows the variable's name, never the URL (whose path is a token).
            "alerts": AlertWebhook(webhook_url=dg.EnvVar(ALERT_WEBHOOK_ENV))
            if os.environ.get(ALERT_WEBHOOK_ENV)
            else AlertWebhook(),
        }
    if environment == "production":
        return {
            "duckdb": Warehouse(
                lake_catalog=dg.EnvVar(LAKE_CATALOG_ENV),
                lake_data_path=dg.EnvVar(LAKE_DATA_PATH_ENV),
                s3_endpoint=dg.EnvVar(S3_ENDPOINT_ENV),
                connection_config={"memory_limit": DUCKDB_MEMORY_LIMIT},
            ),
            "landing": LandingZone(path=dg.EnvVar("MLPLATFORM_LANDING_DIR")),
            "dvc": DVCResource(
                repo_dir=dg.EnvVar("MLPLATFORM_DVC_REPO"),
                versions_dir=dg.EnvVar("MLPLATFORM_DVC_VERSIONS_DIR"),
                remote_url=dg.EnvVar(DVC_REMOTE_ENV),
                executable=default_executable(),
                s3_endpoint=dg.EnvVar(S3_ENDPOINT_ENV),
            ),
            "alerts": AlertWebhook(webhook_url=dg.EnvVar(ALERT_WEBHOOK_ENV)),
        }
    raise ValueError(f"{ENVIRONMENT_ENV} must be 'local' or 'production', not {environment!r}")


def resource(name: str, environment: str | None = None) -> dg.ConfigurableResource:
    """One resource ready to use outside a run (the ``mlplatform`` command): its ``dg.EnvVar``s resolved now,
    so the command works under the production profile too, and names a missing variable when one is unset."""
    try:
        return resources_for(environment)[name].process_config_and_initialize()
    except dg.DagsterInvalidConfigError as error:
        # Dagster's own message of the first failure names the unset variable.
        detail = error.errors[0].error_data.message if error.errors and error.errors[0].error_data else str(error)
        reason = detail.strip().splitlines()[0].split(": ", 1)[-1]
        raise ValueError(f"the {name} resource cannot be set up: {reason}") from None
