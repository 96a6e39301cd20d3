"""The parameters in ``params.yaml``, which both the Launchpad's config defaults and DVC's stages read."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PARAMS_ENV = "MLPLATFORM_PARAMS"
# The project's params.yaml, beside src/ (the platform runs from its clone).
PROJECT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@cache
def load_params() -> dict[str, Any]:
    path = Path(os.environ.get(PARAMS_ENV, PROJECT_PARAMS))
    if not path.exists():
        raise FileNotFoundError(f"no parameters at {path}: set {PARAMS_ENV} to the project's params.yaml")
    return yaml.safe_load(path.read_text())


def param(section: str, name: str) -> Any:
    return load_params()[section][name]
