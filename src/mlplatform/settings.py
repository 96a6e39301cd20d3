"""Where the platform keeps its state, and the partitioning every stage shares.

All state lives under one data folder (``MLPLATFORM_DATA_DIR``, default ``./data``), so a test or
a second deployment can point the whole platform at another folder with one variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "MLPLATFORM_DATA_DIR"

# The real data covers one year; every monthly asset shares this range.
FIRST_MONTH = "2013-01"
LAST_MONTH = "2013-12"


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


def month_range(first: str, last: str) -> list[str]:
    """Every ``YYYY-MM`` month from ``first`` to ``last`` inclusive."""
    start_year, start_month = _parse_month(first)
    end_year, end_month = _parse_month(last)
    months = []
    year, month = start_year, start_month
    while (year, month) <= (end_year, end_month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    if not months:
        raise ValueError(f"empty month range: {first}..{last}")
    return months


def next_month(month: str) -> str:
    year, number = _parse_month(month)
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _parse_month(value: str) -> tuple[int, int]:
    try:
        year_text, month_text = value.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        raise ValueError(f"expected a month as YYYY-MM, got {value!r}") from None
    if not 1 <= month <= 12:
        raise ValueError(f"expected a month as YYYY-MM, got {value!r}")
    return year, month


def parse_month_spec(spec: str) -> list[str]:
    """``2013-01..2013-06`` -> six months; ``2013-03`` -> one month."""
    first, sep, last = spec.partition("..")
    return month_range(first, last if sep else first)
