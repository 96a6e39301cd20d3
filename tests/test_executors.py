"""Where steps run, chosen by MLPLATFORM_EXECUTOR: in process, one process per step, Celery (compose) or
Kubernetes Jobs (Helm).
tests/production/test_topology.py runs the Celery one on real workers."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest
import yaml

from mlplatform.definitions import build_definitions
from mlplatform.orchestration.executors import (
    CELERY_CONFIG_ENV,
    DEFAULT_CELERY_CONFIG,
    EXECUTOR_ENV,
    celery_settings,
    executor_for,
)


def test_no_executor_named_runs_the_steps_in_the_run_worker(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert executor_for() is dg.in_process_executor
    job = build_definitions("local").resolve_job_def("flights_period_pipeline")
    assert job.executor_def.name == "in_process"


def test_a_run_worker_loads_the_definitions_without_pytorch():
    """Every run starts a process that loads the definitions: PyTorch (seconds to import) waits for a step that
    trains or loads a model, and a period's landing run never imports it."""
    load = (
        "import sys\n"
        "from mlplatform.definitions import build_definitions\n"
        "build_definitions('local').resolve_job_def('flights_period_pipeline')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_multiprocess_is_dagsters_step_per_process_executor(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    job = build_definitions("local").resolve_job_def("flights_period_pipeline")
    assert job.executor_def is dg.multiprocess_executor


def test_celery_executor_submits_with_the_workers_own_settings(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    monkeypatch.delenv(CELERY_CONFIG_ENV, raising=False)
    settings = yaml.safe_load(DEFAULT_CELERY_CONFIG.read_text())["execution"]["config"]
    assert celery_settings() == settings
    # A dead worker's step goes back to the queue: acknowledged when it ends, not when it starts.
    assert settings["config_source"]["task_acks_late"] is True
    assert settings["broker"] == {"env": "MLPLATFORM_CELERY_BROKER"}
    for job in ("flights_period_pipeline", "employment_training"):
        executor = build_definitions("production").resolve_job_def(job).executor_def
        assert executor.name == "celery"


def test_celery_settings_follow_the_file_named_in_the_environment(monkeypatch, tmp_path):
    own = tmp_path / "celery.yaml"
    own.write_text(yaml.safe_dump({"execution": {"config": {"broker": "redis://elsewhere:6379/0"}}}))
    monkeypatch.setenv(CELERY_CONFIG_ENV, str(own))
    assert celery_settings() == {"broker": "redis://elsewhere:6379/0"}
    own.write_text("workers: 2\n")
    with pytest.raises(ValueError, match=r"celery\.yaml: no Celery settings under execution\.config"):
        celery_settings()


def test_kubernetes_executor_runs_each_step_as_a_job():
    from dagster_k8s import k8s_job_executor

    assert executor_for("k8s") is k8s_job_executor


def test_an_unknown_executor_is_refused_with_the_choices():
    choices = "MLPLATFORM_EXECUTOR must be one of multiprocess, celery, k8s or unset, not 'ray'"
    with pytest.raises(ValueError, match=choices):
        executor_for("ray")
