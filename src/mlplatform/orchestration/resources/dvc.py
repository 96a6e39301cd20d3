"""DVC as a resource: the one place the platform calls DVC."""

import os
import sys
from pathlib import Path

import dagster as dg

from mlplatform.data.versioning import DVCRepo

EXECUTABLE_ENV = "MLPLATFORM_DVC"


def default_executable() -> str:
    """``MLPLATFORM_DVC``, else the ``dvc`` beside this interpreter (the set-up links DVC's own environment
    there), else the one on PATH."""
    if EXECUTABLE_ENV in os.environ:
        return os.environ[EXECUTABLE_ENV]
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else "dvc"


class DVCResource(dg.ConfigurableResource):
    """Versions exported tables with the ``dvc`` command line (DVC runs in its own environment)."""

    repo_dir: str
    versions_dir: str
    remote_url: str
    executable: str
    # host:port (or https://host:port) of the S3-compatible store of an s3:// remote (MinIO); empty for AWS S3.
    s3_endpoint: str = ""

    def repo(self) -> DVCRepo:
        return DVCRepo(
            root=Path(self.repo_dir),
            executable=self.executable,
            remote_url=self.remote_url,
            versions_dir=Path(self.versions_dir),
            s3_endpoint=self.s3_endpoint,
        )
