"""The one code location: ``mlplatform.definitions:defs``."""

from __future__ import annotations

import dagster as dg

from mlplatform.assets import evaluation, features, ingestion, serving, training, validation
from mlplatform.logs import configure_logging
from mlplatform.resources import resources_for

configure_logging()

REFERENCE_JOB = "reference_data"
MONTHLY_JOB = "monthly_pipeline"
TRAINING_JOB = "train_delay_model"
SCORING_JOB = "score_flights"

_modules = [ingestion, validation, features, training, evaluation, serving]
_assets = dg.load_assets_from_modules(_modules)

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
    selection=dg.AssetSelection.groups("training") | dg.AssetSelection.assets("champion_model"),
    description="Build the training set for a target month, train the delay model, evaluate it against the "
    "baseline and the champion, and promote it when it passes the gate.",
)

score_flights = dg.define_asset_job(
    SCORING_JOB,
    selection=dg.AssetSelection.assets("flight_delay_predictions"),
    description="Score one month's flights with the champion (and a challenger in its shadow).",
)


def build_definitions(environment: str | None = None) -> dg.Definitions:
    """The platform's definitions, with resources for ``environment`` (default: ``MLPLATFORM_ENV``)."""
    return dg.Definitions(
        assets=_assets,
        asset_checks=dg.load_asset_checks_from_modules(_modules),
        jobs=[reference_data, monthly_pipeline, train_delay_model, score_flights],
        resources=resources_for(environment),
    )


defs = build_definitions()
