"""The landing zone as a resource: where each dataset's period and reference files arrive."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.data import landing
from mlplatform.datasets import Dataset


class LandingZone(dg.ConfigurableResource):
    """A folder laid out as ``<dataset>/<source>/<period>.csv`` and ``<dataset>/reference/<table>.csv``."""

    path: str

    def period_file(self, dataset: Dataset, source: str, period: str) -> Path:
        return landing.period_file(Path(self.path), dataset, source, period)

    def reference_file(self, dataset: Dataset, table: str) -> Path:
        return landing.reference_file(Path(self.path), dataset, table)
