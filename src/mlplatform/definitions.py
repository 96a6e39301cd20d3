"""The one code location: ``mlplatform.definitions:defs``.

Every dataset folder under ``mlplatform/defs`` is loaded as a component (``load_from_defs_folder``); the
platform adds what is not per dataset: failure alerts, declarative automation and the resources.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster.components import load_from_defs_folder

from mlplatform.logs import configure_logging
from mlplatform.orchestration.executors import executor_for
from mlplatform.orchestration.resources import resources_for
from mlplatform.orchestration.sensors import PLATFORM_SENSORS

configure_logging()


def build_definitions(environment: str | None = None) -> dg.Definitions:
    """The platform's definitions, with resources for ``environment`` (default: ``MLPLATFORM_ENV``) and the
    executor named by ``MLPLATFORM_EXECUTOR`` (default: in process)."""
    datasets = load_from_defs_folder(path_within_project=Path(__file__).parent)
    platform = dg.Definitions(sensors=PLATFORM_SENSORS, resources=resources_for(environment), executor=executor_for())
    return dg.Definitions.merge(datasets, platform)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
