"""A model's artifact: a folder holding ``weights.pt`` and ``manifest.json``, versioned with DVC as one version.

Apart from :mod:`mlplatform.ml.model` so that what only names or finds an artifact (monitoring reads the
manifest's feature importance) does not import PyTorch: a run worker that lands data or monitors a period starts
without it.
"""

from __future__ import annotations

from pathlib import Path

from mlplatform.data.versioning import DVCRepo

ARTIFACT_NAME = "model"  # the artifact's folder, tracked by DVC as one version
WEIGHTS_FILE = "weights.pt"
MANIFEST_FILE = "manifest.json"


def artifact_folder(repo: DVCRepo, version: str) -> Path:
    """The artifact folder of model ``version``, brought back through DVC (from its cache, or from the remote
    when the cache lost it) and checked file by file against the version."""
    return repo.restore(version, ARTIFACT_NAME)
