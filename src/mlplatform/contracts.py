"""Data contracts for the raw tables: one declaration gives the DuckDB types and the pandera schema.

Each field states its type, its allowed values and, where nulls are allowed, why. Rows that break a
contract are quarantined with the names of the checks they failed; they are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

NYC_ORIGINS = ["EWR", "JFK", "LGA"]

_POLARS_TYPES = {
    "BIGINT": pl.Int64,
    "DOUBLE": pl.Float64,
    "VARCHAR": pl.String,
    "TIMESTAMP": pl.Datetime("us"),
}

# Set on rows whose natural key already appeared in the same partition (computed in SQL, since a
# bounded batch cannot see the whole partition).
DUPLICATE_FLAG = "_duplicate_key"


@dataclass(frozen=True)
class Field:
    sql_type: str
    checks: tuple[pa.Check, ...] = ()
    null_reason: str | None = None  # None: nulls break the contract

    @property
    def nullable(self) -> bool:
        return self.null_reason is not None


@dataclass(frozen=True)
class Contract:
    """The contract of one raw dataset."""

    name: str
    fields: dict[str, Field]
    natural_key: tuple[str, ...]
    row_checks: tuple[pa.Check, ...] = field(default=())

    @property
    def columns(self) -> list[str]:
        return list(self.fields)

    @property
    def sql_types(self) -> dict[str, str]:
        return {name: spec.sql_type for name, spec in self.fields.items()}

    def schema(self, year: int, month: int) -> pa.DataFrameSchema:
        """The pandera schema for one monthly partition: every row must belong to that month."""
        columns = {
            name: pa.Column(
                _POLARS_TYPES[spec.sql_type],
                checks=list(spec.checks) + _partition_checks(name, year, month),
                nullable=spec.nullable,
            )
            for name, spec in self.fields.items()
        }
        columns[DUPLICATE_FLAG] = pa.Column(
            pl.Boolean, checks=[pa.Check.eq(False, name="unique_natural_key")]
        )
        return pa.DataFrameSchema(columns, checks=list(self.row_checks), name=self.name)


def _partition_checks(column: str, year: int, month: int) -> list[pa.Check]:
    if column == "year":
        return [pa.Check.eq(year, name="in_partition")]
    if column == "month":
        return [pa.Check.eq(month, name="in_partition")]
    return []


def _clock(name: str) -> pa.Check:
    """An HHMM clock time: 0..2400 with minutes under 60 (2400 is how the source writes midnight)."""
    return pa.Check(
        lambda data: (data.lazyframe.select(pl.col(data.key).is_between(0, 2400) & (pl.col(data.key) % 100 < 60))),
        name=f"{name}_hhmm",
    )


def _sched_time_matches_hour_minute(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col("sched_dep_time") == pl.col("hour") * 100 + pl.col("minute"))


CANCELLED = "the flight was cancelled and never departed"
NOT_ARRIVED = "the flight was cancelled or diverted and has no arrival at its destination"

FLIGHTS = Contract(
    name="flights",
    fields={
        "year": Field("BIGINT"),
        "month": Field("BIGINT"),
        "day": Field("BIGINT", (pa.Check.in_range(1, 31),)),
        "dep_time": Field("BIGINT", (_clock("dep_time"),), null_reason=CANCELLED),
        "sched_dep_time": Field("BIGINT", (_clock("sched_dep_time"),)),
        "dep_delay": Field("BIGINT", (pa.Check.in_range(-120, 1800),), null_reason=CANCELLED),
        "arr_time": Field("BIGINT", (_clock("arr_time"),), null_reason=NOT_ARRIVED),
        "sched_arr_time": Field("BIGINT", (_clock("sched_arr_time"),)),
        "arr_delay": Field("BIGINT", (pa.Check.in_range(-180, 1800),), null_reason=NOT_ARRIVED),
        "carrier": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z0-9]{2}$"),)),
        "flight": Field("BIGINT", (pa.Check.in_range(1, 9999),)),
        "tailnum": Field(
            "VARCHAR",
            (pa.Check.str_matches(r"^[A-Z0-9]{2,7}$"),),
            null_reason="no aircraft was assigned before the flight was cancelled",
        ),
        "origin": Field("VARCHAR", (pa.Check.isin(NYC_ORIGINS),)),
        "dest": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z]{3}$"),)),
        "air_time": Field("BIGINT", (pa.Check.in_range(1, 900),), null_reason=NOT_ARRIVED),
        "distance": Field("BIGINT", (pa.Check.in_range(1, 6000),)),
        "hour": Field("BIGINT", (pa.Check.in_range(0, 23),)),
        "minute": Field("BIGINT", (pa.Check.in_range(0, 59),)),
        "time_hour": Field("TIMESTAMP"),
    },
    natural_key=("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"),
    row_checks=(pa.Check(_sched_time_matches_hour_minute, name="sched_dep_time_is_hour_minute"),),
)

SENSOR_GAP = "the station reported no reading that hour"

WEATHER = Contract(
    name="weather",
    fields={
        "origin": Field("VARCHAR", (pa.Check.isin(NYC_ORIGINS),)),
        "year": Field("BIGINT"),
        "month": Field("BIGINT"),
        "day": Field("BIGINT", (pa.Check.in_range(1, 31),)),
        "hour": Field("BIGINT", (pa.Check.in_range(0, 23),)),
        "temp": Field("DOUBLE", (pa.Check.in_range(-60.0, 130.0),), null_reason=SENSOR_GAP),
        "dewp": Field("DOUBLE", (pa.Check.in_range(-80.0, 100.0),), null_reason=SENSOR_GAP),
        "humid": Field("DOUBLE", (pa.Check.in_range(0.0, 100.0),), null_reason=SENSOR_GAP),
        "wind_dir": Field("BIGINT", (pa.Check.in_range(0, 360),), null_reason="calm or variable wind"),
        "wind_speed": Field("DOUBLE", (pa.Check.in_range(0.0, 150.0),), null_reason=SENSOR_GAP),
        "wind_gust": Field("DOUBLE", (pa.Check.in_range(0.0, 200.0),), null_reason="no gusts that hour"),
        "precip": Field("DOUBLE", (pa.Check.in_range(0.0, 10.0),), null_reason=SENSOR_GAP),
        "pressure": Field("DOUBLE", (pa.Check.in_range(900.0, 1100.0),), null_reason=SENSOR_GAP),
        "visib": Field("DOUBLE", (pa.Check.in_range(0.0, 100.0),), null_reason=SENSOR_GAP),
        "time_hour": Field("TIMESTAMP"),
    },
    # Local (year, month, day, hour) repeats when clocks fall back in November; UTC does not.
    natural_key=("origin", "time_hour"),
)

CONTRACTS = {contract.name: contract for contract in (FLIGHTS, WEATHER)}
