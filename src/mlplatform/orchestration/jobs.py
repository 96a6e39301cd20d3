"""Each dataset's jobs, named after it: what a person launches, a sensor requests, or the CLI runs."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import (
    FEATURES_TABLE,
    PREDICTIONS_TABLE,
    TRAINING_SET_TABLE,
    clean_table,
    quarantine_table,
    raw_table,
)
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.evaluation import EVALUATION
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE, PREDICTION_DRIFT
from mlplatform.orchestration.assets.rollout import ROLLOUT
from mlplatform.orchestration.assets.serving import CHAMPION
from mlplatform.orchestration.assets.training import MODEL

# dagster.yaml queues runs with this tag one at a time per value: one training run per dataset at once
# (a dataset's runs share its training table and artifact folder; two datasets train side by side).
TRAINING_TAG = "mlplatform/training"
# dagster.yaml also queues a landing sensor's runs one at a time per dataset (the tag's value), in the order the
# sensor asked for them: a period's features read the periods before it.
LANDING_TAG = "mlplatform/landing"
# Every job's runs carry their dataset and the job's kind (period_pipeline, training, scoring, reference_data), so
# the production run queue can limit runs per dataset and per kind of job (deploy/dagster.production.yaml).
DATASET_TAG = "mlplatform/dataset"
JOB_TAG = "mlplatform/job"
MONITORING = (FEATURE_DRIFT, PREDICTION_DRIFT, PERFORMANCE)


@dataclass(frozen=True)
class JobNames:
    reference: str | None
    periods: str
    training: str
    scoring: str


def job_names(dataset: Dataset) -> JobNames:
    return JobNames(
        reference=f"{dataset.name}_reference_data" if dataset.reference else None,
        periods=f"{dataset.name}_period_pipeline",
        training=f"{dataset.name}_training",
        scoring=f"{dataset.name}_scoring",
    )


def period_range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the periods ``first``..``last`` (assets whose backfill policy is a single run)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def dataset_jobs(dataset: Dataset) -> list[dg.UnresolvedAssetJobDefinition]:
    names, key = job_names(dataset), lambda name: asset_key(dataset, name)
    period_assets = [
        key(table(source)) for source in dataset.sources for table in (raw_table, clean_table, quarantine_table)
    ]
    tags = lambda kind: {DATASET_TAG: dataset.name, JOB_TAG: kind}  # noqa: E731
    jobs = [
        dg.define_asset_job(
            names.periods,
            tags=tags("period_pipeline"),
            selection=dg.AssetSelection.assets(*period_assets, key(FEATURES_TABLE)),
            description=f"One {dataset.name} period from landing files to features: raw, validated, quarantined, "
            "featurised.",
        ),
        dg.define_asset_job(
            names.training,
            selection=dg.AssetSelection.assets(*(key(n) for n in (TRAINING_SET_TABLE, MODEL, EVALUATION, CHAMPION))),
            tags={**tags("training"), TRAINING_TAG: dataset.name},
            description=f"Build {dataset.name}'s training set for a target period, train {dataset.model.name}, "
            "evaluate it against the baseline and the champion, and promote it when it passes the gate.",
        ),
        dg.define_asset_job(
            names.scoring,
            tags=tags("scoring"),
            selection=dg.AssetSelection.assets(*(key(name) for name in (PREDICTIONS_TABLE, ROLLOUT, *MONITORING))),
            description=f"Score {dataset.name} periods with the champion (a canary serving its share during a "
            "rollout, a challenger in the shadow), decide the rollout's next step on each, and monitor them (feature "
            "and prediction drift, performance): one period, or a range of them in one run.",
        ),
    ]
    if names.reference:
        jobs.append(
            dg.define_asset_job(
                names.reference,
                tags=tags("reference_data"),
                selection=dg.AssetSelection.assets(*(key(table) for table in dataset.reference)),
                description=f"Load {dataset.name}'s reference tables ({', '.join(dataset.reference)}).",
            )
        )
    return jobs
