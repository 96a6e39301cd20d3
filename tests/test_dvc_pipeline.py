"""dvc.yaml mirrors the flights dataset's graph: `dvc dag`, `dvc status` and `dvc repro` work beside `mlplatform`,
with parameters read from the dataset's own declaration (src/mlplatform/defs/flights/defs.yaml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import seed_periods

from mlplatform.cli import main
from mlplatform.definitions import build_definitions
from mlplatform.orchestration.resources.dvc import default_executable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[1]
FLIGHTS_DEFS = Path("src") / "mlplatform" / "defs" / "flights" / "defs.yaml"


@pytest.fixture
def clone(project, monkeypatch, seeded_landing):
    """The project's files in a temp git repository, as a fresh clone has them, with its data folder inside."""
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "dagster.yaml"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src" / "mlplatform", project / "src" / "mlplatform", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(seeded_landing, project / "data" / "landing")
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(project / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(project / ".dagster"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return project


def _dvc(clone, *args):
    return subprocess.run([default_executable(), *args], cwd=clone, capture_output=True, text=True, timeout=600)


def test_dvc_sees_and_reproduces_the_stages_the_platform_runs(clone):
    assert main(["init"]) == 0
    assert main(["seed"]) == 0
    assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01"]) == 0

    dag = _dvc(clone, "dag", "--mermaid")
    assert dag.returncode == 0, dag.stderr
    assert "seed" in dag.stdout and "flights@2013-12" in dag.stdout

    status = _dvc(clone, "status", "seed", "flights@2013-01")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    assert "flights@2013-02" in _dvc(clone, "status").stdout  # a period not yet run shows as changed

    # `dvc repro` runs a period through the platform, which versions its tables.
    repro = _dvc(clone, "repro", "--single-item", "flights@2013-02")
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    assert (clone / "data" / "versions" / "flights" / "features" / "2013-02.parquet.dvc").exists()
    assert "flights@2013-02" in (clone / "dvc.lock").read_text()

    # A parameter change in the declaration shows on every period that depends on it.
    declaration = clone / FLIGHTS_DEFS
    declaration.write_text(declaration.read_text().replace("smoothing_flights: 20", "smoothing_flights: 50"))
    changed = _dvc(clone, "status", "flights@2013-01").stdout
    assert str(FLIGHTS_DEFS) in changed and "attributes.features" in changed, changed


def _defaults(defs, job: str, op: str) -> dict:
    node = defs.resolve_job_def(job).graph.node_named(op)
    return {name: field.default_value for name, field in node.definition.config_schema.config_type.fields.items()}


def test_launchpad_defaults_and_dvc_params_come_from_the_declaration(flights):
    declared = yaml.safe_load((ROOT / FLIGHTS_DEFS).read_text())["attributes"]
    defs = build_definitions("local")
    validation = _defaults(defs, "flights_period_pipeline", "flights__validate_flights")
    assert validation == declared["validation"]
    features = _defaults(defs, "flights_period_pipeline", "flights__features")
    assert features == {**declared["features"]["params"], "lookback_periods": declared["features"]["lookback_periods"]}
    assert _defaults(defs, "flights_period_pipeline", "flights__raw_flights") == declared["volume"]
    training = _defaults(defs, "flights_training", "flights__training_set")
    assert training == {key: declared["training"][key] for key in ("target_period", "window_periods")}
    assert _defaults(defs, "flights_training", "flights__model") == declared["predictor"]["hyperparameters"]

    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    # dvc.yaml's periods are the flights periods the seed writes, and its parameters are sections of defs.yaml.
    assert pipeline["vars"][0]["flights_months"] == seed_periods(flights)
    [params] = pipeline["stages"]["flights"]["do"]["params"]
    [(path, keys)] = params.items()
    assert path == str(FLIGHTS_DEFS) and keys == ["attributes.volume", "attributes.validation", "attributes.features"]
    assert all(key.split(".")[1] in declared for key in keys)
