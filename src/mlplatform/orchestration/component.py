"""The dataset component: a folder's ``defs.yaml`` becomes the dataset's assets, checks, jobs and sensors.

``type: mlplatform.orchestration.component.DatasetComponent`` in a dataset folder's ``defs.yaml``. The
attributes are the dataset's declaration (``mlplatform.datasets.declaration``), checked with its contract and
feature SQL when the definitions load; a bad declaration fails there, naming the file and what is wrong.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster.components import Component, ComponentLoadContext, Model, Resolvable

from mlplatform.datasets import Dataset, load_dataset
from mlplatform.orchestration.assets.evaluation import evaluation_asset
from mlplatform.orchestration.assets.features import features_asset
from mlplatform.orchestration.assets.ingestion import ingestion_assets
from mlplatform.orchestration.assets.monitoring import monitoring_assets
from mlplatform.orchestration.assets.rollout import rollout_asset
from mlplatform.orchestration.assets.serving import serving_assets
from mlplatform.orchestration.assets.training import training_assets
from mlplatform.orchestration.assets.validation import validation_assets
from mlplatform.orchestration.jobs import dataset_jobs
from mlplatform.orchestration.sensors.first_training import first_training_sensor
from mlplatform.orchestration.sensors.landing import landing_sensor
from mlplatform.orchestration.sensors.retraining import drift_retrain_sensor


class DatasetComponent(Component, Model, Resolvable):
    """One dataset: landing, contracts, features, model, evaluation, serving and monitoring, from its folder.

    Each top-level key is a section of the declaration; what a section may hold is validated by
    ``mlplatform.datasets.declaration`` (an unknown or misspelt key anywhere is an error).
    """

    name: str
    description: str
    owners: list[str] | None = None
    periods: dict[str, Any]
    landing: dict[str, Any]
    seed: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    features: dict[str, Any]
    predictor: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    monitoring: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        attributes = {name: value for name, value in self.model_dump().items() if value is not None}
        return dataset_definitions(load_dataset(context.path, attributes))


def dataset_definitions(dataset: Dataset) -> dg.Definitions:
    """The factory behind the component: a dataset's assets, checks, jobs and sensors."""
    assets = [
        *ingestion_assets(dataset),
        *validation_assets(dataset),
        features_asset(dataset),
        *training_assets(dataset),
        evaluation_asset(dataset),
        *serving_assets(dataset),
        rollout_asset(dataset),
        *monitoring_assets(dataset),
    ]
    jobs = dataset_jobs(dataset)
    return dg.Definitions(
        # Each asset links to the file and line that defines it ("View source" in the UI).
        assets=dg.with_source_code_references(assets),
        jobs=jobs,
        sensors=[
            landing_sensor(dataset, jobs),
            first_training_sensor(dataset, jobs),
            drift_retrain_sensor(dataset, jobs),
        ],
    )
