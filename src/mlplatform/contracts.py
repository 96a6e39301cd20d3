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
    # Above this share of nulls in a month the data is suspect (a warning, not a quarantine).
    max_null_share: float = 0.0

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

    def schema(self, year: int | None = None, month: int | None = None) -> pa.DataFrameSchema:
        """The pandera schema; given a month, every row must belong to that month."""
        columns = {
            name: pa.Column(
                _POLARS_TYPES[spec.sql_type],
                checks=list(spec.checks) + _partition_checks(name, year, month),
                nullable=spec.nullable,
            )
            for name, spec in self.fields.items()
        }
        columns[DUPLICATE_FLAG] = pa.Column(pl.Boolean, checks=[pa.Check.eq(False, name="unique_natural_key")])
        return pa.DataFrameSchema(columns, checks=list(self.row_checks), name=self.name)


def _partition_checks(column: str, year: int | None, month: int | None) -> list[pa.Check]:
    expected = {"year": year, "month": month}.get(column)
    return [] if expected is None else [pa.Check.eq(expected, name="in_partition")]


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
        "dep_time": Field("BIGINT", (_clock("dep_time"),), CANCELLED, max_null_share=0.15),
        "sched_dep_time": Field("BIGINT", (_clock("sched_dep_time"),)),
        "dep_delay": Field("BIGINT", (pa.Check.in_range(-120, 1800),), CANCELLED, max_null_share=0.15),
        "arr_time": Field("BIGINT", (_clock("arr_time"),), NOT_ARRIVED, max_null_share=0.15),
        "sched_arr_time": Field("BIGINT", (_clock("sched_arr_time"),)),
        "arr_delay": Field("BIGINT", (pa.Check.in_range(-180, 1800),), NOT_ARRIVED, max_null_share=0.15),
        "carrier": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z0-9]{2}$"),)),
        "flight": Field("BIGINT", (pa.Check.in_range(1, 9999),)),
        "tailnum": Field(
            "VARCHAR",
            (pa.Check.str_matches(r"^[A-Z0-9]{2,7}$"),),
            "no aircraft was assigned before the flight was cancelled",
            max_null_share=0.05,
        ),
        "origin": Field("VARCHAR", (pa.Check.isin(NYC_ORIGINS),)),
        "dest": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z]{3}$"),)),
        "air_time": Field("BIGINT", (pa.Check.in_range(1, 900),), NOT_ARRIVED, max_null_share=0.15),
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
        "temp": Field("DOUBLE", (pa.Check.in_range(-60.0, 130.0),), SENSOR_GAP, max_null_share=0.05),
        "dewp": Field("DOUBLE", (pa.Check.in_range(-80.0, 100.0),), SENSOR_GAP, max_null_share=0.05),
        "humid": Field("DOUBLE", (pa.Check.in_range(0.0, 100.0),), SENSOR_GAP, max_null_share=0.05),
        "wind_dir": Field("BIGINT", (pa.Check.in_range(0, 360),), "calm or variable wind", max_null_share=0.1),
        "wind_speed": Field("DOUBLE", (pa.Check.in_range(0.0, 150.0),), SENSOR_GAP, max_null_share=0.05),
        "wind_gust": Field("DOUBLE", (pa.Check.in_range(0.0, 200.0),), "no gusts that hour", max_null_share=1.0),
        "precip": Field("DOUBLE", (pa.Check.in_range(0.0, 10.0),), SENSOR_GAP, max_null_share=0.05),
        "pressure": Field(
            "DOUBLE", (pa.Check.in_range(900.0, 1100.0),), "the station reported no pressure", max_null_share=0.3
        ),
        "visib": Field("DOUBLE", (pa.Check.in_range(0.0, 100.0),), SENSOR_GAP, max_null_share=0.05),
        "time_hour": Field("TIMESTAMP"),
    },
    # Local (year, month, day, hour) repeats when clocks fall back in November; UTC does not.
    natural_key=("origin", "time_hour"),
)

# Reference data: whole tables, replaced on each load.
AIRLINES = Contract(
    name="airlines",
    fields={"carrier": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z0-9]{2}$"),)), "name": Field("VARCHAR")},
    natural_key=("carrier",),
)

AIRPORTS = Contract(
    name="airports",
    fields={
        "faa": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z0-9]{3,4}$"),)),
        "name": Field("VARCHAR"),
        "lat": Field("DOUBLE", (pa.Check.in_range(-90.0, 90.0),)),
        "lon": Field("DOUBLE", (pa.Check.in_range(-180.0, 180.0),)),
        "alt": Field("BIGINT", (pa.Check.in_range(-1500, 30000),)),
        "tz": Field("BIGINT", (pa.Check.in_range(-12, 14),)),
        "dst": Field("VARCHAR", (pa.Check.isin(["A", "U", "N"]),)),
        "tzone": Field(
            "VARCHAR", null_reason="the source has no IANA zone for a few small airfields", max_null_share=0.01
        ),
    },
    natural_key=("faa",),
)

UNKNOWN_SPEC = "the registry does not publish this for most aircraft"
PLANES = Contract(
    name="planes",
    fields={
        "tailnum": Field("VARCHAR", (pa.Check.str_matches(r"^[A-Z0-9]{2,7}$"),)),
        "year": Field("BIGINT", (pa.Check.in_range(1900, 2100),), "the registry has no build year", 0.05),
        "type": Field("VARCHAR"),
        "manufacturer": Field("VARCHAR"),
        "model": Field("VARCHAR"),
        "engines": Field("BIGINT", (pa.Check.in_range(1, 8),)),
        "seats": Field("BIGINT", (pa.Check.in_range(1, 1000),)),
        "speed": Field("BIGINT", (pa.Check.in_range(1, 1000),), UNKNOWN_SPEC, max_null_share=1.0),
        "engine": Field("VARCHAR"),
    },
    natural_key=("tailnum",),
)

REFERENCE_CONTRACTS = {contract.name: contract for contract in (AIRLINES, AIRPORTS, PLANES)}
