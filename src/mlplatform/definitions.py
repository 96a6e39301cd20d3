"""The one code location: ``mlplatform.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from mlplatform.assets import evaluation, features, ingestion, monitoring, serving, training, validation
from mlplatform.jobs import JOBS
from mlplatform.logs import configure_logging
from mlplatform.resources import resources_for
from mlplatform.sensors import SENSORS

configure_logging()

_modules = [ingestion, validation, features, training, evaluation, serving, monitoring]


def build_definitions(environment: str | None = None) -> dg.Definitions:
    """The platform's definitions, with resources for ``environment`` (default: ``MLPLATFORM_ENV``)."""
    return dg.Definitions(
        # Each asset links to the file and line that defines it ("View source" in the UI).
        assets=dg.with_source_code_references(dg.load_assets_from_modules(_modules)),
        asset_checks=dg.load_asset_checks_from_modules(_modules),
        jobs=JOBS,
        sensors=SENSORS,
        resources=resources_for(environment),
    )


defs = build_definitions()
