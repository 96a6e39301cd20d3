"""Periods: the time slices a dataset arrives in (days, months or years), parsed and counted in one place.

A period is named by its key: ``2013-01-05`` (daily), ``2013-01`` (monthly) or ``2016`` (yearly). Every
other module asks a :class:`Periods` for keys, ranges and arithmetic instead of splitting strings itself.
Periods have a first key and no last one: a file for any later period is taken in like the first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Grain = Literal["daily", "monthly", "yearly"]
GRAINS: tuple[Grain, ...] = ("daily", "monthly", "yearly")
_FORMATS: dict[str, str] = {"daily": "%Y-%m-%d", "monthly": "%Y-%m", "yearly": "%Y"}
_EXAMPLES = {"daily": "2013-01-31", "monthly": "2013-01", "yearly": "2016"}
# The cron schedule each grain's partitions follow (Dagster has no yearly partitions class; a cron does it).
CRON = {"daily": "0 0 * * *", "monthly": "0 0 1 * *", "yearly": "0 0 1 1 *"}


class PeriodError(ValueError):
    """A period key or range that does not fit the grain."""


@dataclass(frozen=True)
class Periods:
    grain: Grain
    start: str  # the first period's key

    def __post_init__(self) -> None:
        if self.grain not in GRAINS:
            raise PeriodError(f"grain must be one of {GRAINS}, not {self.grain!r}")
        self.parse(self.start)

    @property
    def fmt(self) -> str:
        """The strftime format of a key (DuckDB's strftime takes the same)."""
        return _FORMATS[self.grain]

    @property
    def cron(self) -> str:
        return CRON[self.grain]

    def parse(self, key: str) -> dt.date:
        """The first day of period ``key``; an error naming the expected form when it is not one."""
        try:
            day = dt.datetime.strptime(str(key), self.fmt).date()
        except ValueError:
            raise PeriodError(f"expected a {self.grain} period like {_EXAMPLES[self.grain]}, got {key!r}") from None
        if self.key(day) != str(key):  # strptime accepts "2013-1"; keys have one spelling
            raise PeriodError(f"expected a {self.grain} period like {_EXAMPLES[self.grain]}, got {key!r}")
        return day

    def key(self, day: dt.date) -> str:
        return day.strftime(self.fmt)

    def index(self, key: str) -> int:
        """A running number: consecutive periods differ by one."""
        day = self.parse(key)
        if self.grain == "yearly":
            return day.year
        if self.grain == "monthly":
            return day.year * 12 + day.month - 1
        return day.toordinal()

    def from_index(self, index: int) -> str:
        if self.grain == "yearly":
            return self.key(dt.date(index, 1, 1))
        if self.grain == "monthly":
            return self.key(dt.date(index // 12, index % 12 + 1, 1))
        return self.key(dt.date.fromordinal(index))

    def shift(self, key: str, count: int) -> str:
        """The period ``count`` periods after ``key`` (before it, when negative)."""
        return self.from_index(self.index(key) + count)

    def between(self, first: str, last: str) -> list[str]:
        """Every period from ``first`` to ``last`` inclusive."""
        start, end = self.index(first), self.index(last)
        if end < start:
            raise PeriodError(f"empty period range: {first}..{last}")
        return [self.from_index(i) for i in range(start, end + 1)]

    def before(self, key: str, count: int) -> list[str]:
        """The ``count`` periods right before ``key``, oldest first."""
        return [self.shift(key, -offset) for offset in range(count, 0, -1)]

    def ranges(self, keys: list[str]) -> list[tuple[str, str]]:
        """``keys`` as the fewest ranges of consecutive periods, oldest first, each as (first, last)."""
        ranges: list[tuple[str, str]] = []
        for key in sorted(set(keys), key=self.index):
            if ranges and self.index(key) == self.index(ranges[-1][1]) + 1:
                ranges[-1] = (ranges[-1][0], key)
            else:
                ranges.append((key, key))
        return ranges

    def parse_spec(self, spec: str) -> list[str]:
        """``2013-01..2013-06`` -> six months; ``2016`` -> one year."""
        first, sep, last = spec.partition("..")
        return self.between(first, last if sep else first)

    def is_open(self, key: str, today: dt.date | None = None) -> bool:
        """Whether ``key`` is a period that has started (the current one included), on or after the first."""
        today = today or dt.date.today()
        return self.index(self.start) <= self.index(key) <= self.index(self.key(today))

    def end(self, key: str) -> dt.date:
        """The first day after period ``key``."""
        return self.parse(self.shift(key, 1))
