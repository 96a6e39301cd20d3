"""Where the platform keeps its state.

All state lives under one data folder (``MLPLATFORM_DATA_DIR``, default ``./data``), so a test or
a second deployment can point the whole platform at another folder with one variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "MLPLATFORM_DATA_DIR"


@dataclass(frozen=True)
class Paths:
    """The folders and files under one data folder."""

    data_dir: Path

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def versions_dir(self) -> Path:
        """Exported versions, tracked by DVC."""
        return self.data_dir / "versions"

    @property
    def dvc_remote(self) -> Path:
        """The default DVC remote: a local folder, until a cloud remote is configured."""
        return self.data_dir / "dvc-remote"

    @property
    def dvc_root(self) -> Path:
        """The DVC repository: the folder holding the data folder (the project, by default)."""
        return self.data_dir.parent

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get(DATA_DIR_ENV, "data")).resolve())
