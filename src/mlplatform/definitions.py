"""The one code location: ``mlplatform.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from mlplatform.assets import evaluation, features, ingestion, training, validation
from mlplatform.logs import configure_logging
from mlplatform.resources import resources_for

configure_logging()

REFERENCE_JOB = "reference_data"
MONTHLY_JOB = "monthly_pipeline"
TRAINING_JOB = "train_delay_model"

_assets = dg.load_assets_from_modules([ingestion, validation, features, training, evaluation])

reference_data = dg.define_asset_job(
    REFERENCE_JOB,
    selection=dg.AssetSelection.assets("airlines", "airports", "planes"),
    description="Load the reference tables (airlines, airports, planes).",
)
monthly_pipeline = dg.define_asset_job(
    MONTHLY_JOB,
    selection=dg.AssetSelection.groups("ingestion", "validation", "features")
    - dg.AssetSelection.assets("airlines", "airports", "planes"),
    description="One month from landing file to features: raw, validated, quarantined, featurised.",
)

train_delay_model = dg.define_asset_job(
    TRAINING_JOB,
    selection=dg.AssetSelection.groups("training"),
    description="Build the training set for a target month and train the delay model on it.",
)


def build_definitions(environment: str | None = None) -> dg.Definitions:
    """The platform's definitions, with resources for ``environment`` (default: ``MLPLATFORM_ENV``)."""
    return dg.Definitions(
        assets=_assets,
        asset_checks=dg.load_asset_checks_from_modules([ingestion, validation, features, training, evaluation]),
        jobs=[reference_data, monthly_pipeline, train_delay_model],
        resources=resources_for(environment),
    )


defs = build_definitions()
