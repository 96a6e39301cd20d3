"""Where steps run, chosen per deployment by ``MLPLATFORM_EXECUTOR``.

Unset (``make run``, tests): in process, a run's steps one after another in its run worker. A step in a subprocess
of its own (Dagster's default, ``multiprocess``) imports Dagster, PyTorch and the project again: a flights period
run took 67-100 s that way against 26-28 s in process (docs/benchmarks.md, "Time to value"), and the one-slot
``duckdb`` pool runs the warehouse's writers one at a time anyway. ``multiprocess``: that default, steps side by
side up to the pools' limits. ``celery``: steps go
to Celery workers through Redis (deploy/compose.yaml), the workers and the run workers reading one settings file,
``MLPLATFORM_CELERY_CONFIG`` (default deploy/celery.yaml). ``k8s``: each step is a Kubernetes Job
(deploy/helm/values.yaml); it inherits image, environment and volumes from the chart's K8sRunLauncher.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

EXECUTOR_ENV = "MLPLATFORM_EXECUTOR"
CELERY_CONFIG_ENV = "MLPLATFORM_CELERY_CONFIG"
# The source tree is installed editable (the Dockerfile explains why), so deploy/ sits beside src/.
DEFAULT_CELERY_CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "celery.yaml"
EXECUTORS = ("multiprocess", "celery", "k8s")


def executor_for(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``MLPLATFORM_EXECUTOR`` (or ``name``); in process when unset."""
    name = os.environ.get(EXECUTOR_ENV, "") if name is None else name
    if not name:
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_settings(), name="celery")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)} or unset, not {name!r}")


def celery_settings(path: Path | None = None) -> dict:
    """The ``execution.config`` block of the Celery settings file, exactly what ``dagster-celery worker start -y``
    reads, so that run workers submit steps with the settings the workers consume them with."""
    path = path or Path(os.environ.get(CELERY_CONFIG_ENV, DEFAULT_CELERY_CONFIG))
    try:
        return yaml.safe_load(path.read_text())["execution"]["config"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: no Celery settings under execution.config ({error})") from None
