"""The landing zone as a resource: where monthly and reference files arrive."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform import landing


class LandingZone(dg.ConfigurableResource):
    """A folder laid out as ``flights/YYYY-MM.csv``, ``weather/YYYY-MM.csv`` and ``reference/*.csv``."""

    path: str

    def monthly_file(self, dataset: str, month: str) -> Path:
        return landing.monthly_file(Path(self.path), dataset, month)

    def reference_file(self, dataset: str) -> Path:
        return landing.reference_file(Path(self.path), dataset)
