"""The platform's jobs: what a person launches, a sensor requests, or the CLI runs."""

from __future__ import annotations

import dagster as dg

REFERENCE_JOB = "reference_data"
MONTHLY_JOB = "monthly_pipeline"
TRAINING_JOB = "train_delay_model"
SCORING_JOB = "score_flights"
REFERENCE_ASSETS = ("airlines", "airports", "planes")

reference_data = dg.define_asset_job(
    REFERENCE_JOB,
    selection=dg.AssetSelection.assets(*REFERENCE_ASSETS),
    description="Load the reference tables (airlines, airports, planes).",
)
monthly_pipeline = dg.define_asset_job(
    MONTHLY_JOB,
    selection=dg.AssetSelection.groups("ingestion", "validation", "features")
    - dg.AssetSelection.assets(*REFERENCE_ASSETS),
    description="One month from landing file to features: raw, validated, quarantined, featurised.",
)
train_delay_model = dg.define_asset_job(
    TRAINING_JOB,
    selection=dg.AssetSelection.groups("training") | dg.AssetSelection.assets("champion_model"),
    tags={"mlplatform/serial": "training"},  # dagster.yaml queues these runs one at a time
    description="Build the training set for a target month, train the delay model, evaluate it against the "
    "baseline and the champion, and promote it when it passes the gate.",
)
score_flights = dg.define_asset_job(
    SCORING_JOB,
    selection=dg.AssetSelection.assets("flight_delay_predictions"),
    description="Score one month's flights with the champion (and a challenger in its shadow).",
)
JOBS = [reference_data, monthly_pipeline, train_delay_model, score_flights]
