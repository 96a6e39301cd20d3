"""dvc.yaml mirrors the asset graph: `dvc dag`, `dvc status` and `dvc repro` work beside `mlplatform`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.cli import main
from mlplatform.params import load_params
from mlplatform.resources.dvc import default_executable
from mlplatform.settings import FIRST_MONTH, LAST_MONTH, month_range

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[1]


@pytest.fixture
def clone(project, monkeypatch, seeded_landing):
    """The project's files in a temp git repository, as a fresh clone has them, with its data folder inside."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "dagster.yaml"):
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


def test_dvc_sees_the_stages_the_platform_ran(clone):
    assert main(["init"]) == 0
    assert main(["seed"]) == 0
    assert main(["materialize", "--months", "2013-01"]) == 0

    dag = _dvc(clone, "dag", "--mermaid")
    assert dag.returncode == 0, dag.stderr
    assert "seed" in dag.stdout and "month@2013-12" in dag.stdout

    status = _dvc(clone, "status", "seed", "month@2013-01")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    # A month not yet run shows as changed; a parameter change shows on every month that depends on it.
    assert "month@2013-02" in _dvc(clone, "status").stdout
    params = (clone / "params.yaml").read_text().replace("smoothing_flights: 20", "smoothing_flights: 50")
    (clone / "params.yaml").write_text(params)
    assert "params.yaml" in _dvc(clone, "status", "month@2013-01").stdout


def test_dvc_repro_materializes_a_month_through_the_platform(clone):
    assert main(["init"]) == 0
    assert main(["materialize", "--months", "2013-01"]) == 0
    repro = _dvc(clone, "repro", "--single-item", "month@2013-02")
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    assert (clone / "data" / "versions" / "flight_features" / "2013-02.parquet.dvc").exists()
    assert "month@2013-02" in (clone / "dvc.lock").read_text()


def test_launchpad_defaults_come_from_params_yaml():
    from mlplatform.assets.features import FeatureConfig
    from mlplatform.assets.validation import ValidationConfig

    assert FeatureConfig().lookback_months == load_params()["features"]["lookback_months"]
    assert ValidationConfig().max_quarantine_share == load_params()["validation"]["max_quarantine_share"]
    # dvc.yaml's months are the Dagster partitions.
    assert load_params()["months"] == month_range(FIRST_MONTH, LAST_MONTH)
