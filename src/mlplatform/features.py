"""Point-in-time flight features, built in DuckDB SQL.

Historical delay rates use only months before the partition being built (within ``lookback_months``),
so adding a later month never changes an earlier month's features.

Label: ``is_delayed`` is true when the flight left more than ``delay_threshold_minutes`` late. A cancelled
flight (no departure, so no departure delay) keeps its row with ``is_cancelled = true`` and
``is_delayed = NULL``: it is scored like any scheduled flight, but it is neither a positive nor a negative
example, and it does not count towards historical rates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from mlplatform.params import load_params
from mlplatform.warehouse import PARTITION_COLUMN, partition_row_count, transaction

FEATURES_TABLE = "flight_features"


@dataclass(frozen=True)
class FeatureParams:
    lookback_months: int
    # Pseudo-count pulling a rate with few flights behind it towards the overall rate.
    smoothing_flights: int
    delay_threshold_minutes: int

    @classmethod
    def from_params_file(cls) -> FeatureParams:
        """The defaults, from params.yaml's ``features`` section."""
        return cls(**load_params()["features"])


# Feature column -> the clean_flights / clean_weather / planes columns it is computed from.
COLUMN_LINEAGE: dict[str, list[tuple[str, str]]] = {
    "sched_hour": [("clean_flights", "hour")],
    "weekday": [("clean_flights", "year"), ("clean_flights", "month"), ("clean_flights", "day")],
    "is_holiday": [("clean_flights", "year"), ("clean_flights", "month"), ("clean_flights", "day")],
    "days_to_holiday": [("clean_flights", "year"), ("clean_flights", "month"), ("clean_flights", "day")],
    "distance": [("clean_flights", "distance")],
    "carrier": [("clean_flights", "carrier")],
    "origin": [("clean_flights", "origin")],
    "dest": [("clean_flights", "dest")],
    "plane_age": [("clean_flights", "year"), ("clean_flights", "tailnum"), ("planes", "year")],
    **{
        column: [("clean_weather", column), ("clean_flights", "origin"), ("clean_flights", "time_hour")]
        for column in ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
    },
    "carrier_delay_rate": [("clean_flights", "carrier"), ("clean_flights", "dep_delay")],
    "route_delay_rate": [("clean_flights", "origin"), ("clean_flights", "dest"), ("clean_flights", "dep_delay")],
    "origin_hour_delay_rate": [
        ("clean_flights", "origin"),
        ("clean_flights", "hour"),
        ("clean_flights", "dep_delay"),
    ],
    "is_cancelled": [("clean_flights", "dep_time")],
    "is_delayed": [("clean_flights", "dep_delay")],
}

KEY_COLUMNS = ("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time")


def us_federal_holidays(year: int) -> dict[dt.date, str]:
    """The US federal holidays of one year (observed dates are not shifted: travel peaks on the day)."""

    def nth_weekday(month: int, weekday: int, n: int) -> dt.date:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))

    def last_weekday(month: int, weekday: int) -> dt.date:
        last = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
        return last - dt.timedelta(days=(last.weekday() - weekday) % 7)

    monday, thursday = 0, 3
    return {
        dt.date(year, 1, 1): "New Year's Day",
        nth_weekday(1, monday, 3): "Martin Luther King Jr. Day",
        nth_weekday(2, monday, 3): "Presidents' Day",
        last_weekday(5, monday): "Memorial Day",
        dt.date(year, 7, 4): "Independence Day",
        nth_weekday(9, monday, 1): "Labor Day",
        nth_weekday(10, monday, 2): "Columbus Day",
        dt.date(year, 11, 11): "Veterans Day",
        nth_weekday(11, thursday, 4): "Thanksgiving",
        dt.date(year, 12, 25): "Christmas Day",
    }


def _holiday_table(year: int) -> pa.Table:
    days = {day: name for y in (year - 1, year, year + 1) for day, name in us_federal_holidays(y).items()}
    return pa.table({"holiday": list(days), "name": list(days.values())})


def history_start(month: str, lookback_months: int) -> str:
    """The first month whose flights feed ``month``'s historical rates (the window ends before ``month``)."""
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 - lookback_months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def build_features(con: duckdb.DuckDBPyConnection, month: str, params: FeatureParams | None = None) -> int:
    """Replace ``month`` of ``flight_features`` from the clean tables; returns its row count."""
    params = params or FeatureParams.from_params_file()
    select = _features_sql(params)
    args = {"month": month, "history_start": history_start(month, params.lookback_months)}
    con.register("holidays", _holiday_table(int(month[:4])))
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {FEATURES_TABLE} AS {select} LIMIT 0", args)
        with transaction(con):
            con.execute(f"DELETE FROM {FEATURES_TABLE} WHERE {PARTITION_COLUMN} = ?", [month])
            con.execute(f"INSERT INTO {FEATURES_TABLE} {select}", args)
    finally:
        con.unregister("holidays")
    return partition_row_count(con, FEATURES_TABLE, month)


def _features_sql(params: FeatureParams) -> str:
    k = params.smoothing_flights
    threshold = params.delay_threshold_minutes

    def rate(alias: str) -> str:
        return f"(coalesce({alias}.delayed, 0) + {k} * prior.rate) / (coalesce({alias}.flights, 0) + {k})"

    weather = ", ".join(
        f"w.{column}" for column in ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
    )
    return f"""
    WITH history AS (
        SELECT carrier, origin, dest, hour, (dep_delay > {threshold})::DOUBLE AS delayed
        FROM clean_flights
        WHERE {PARTITION_COLUMN} >= $history_start AND {PARTITION_COLUMN} < $month AND dep_delay IS NOT NULL
    ),
    prior AS (SELECT avg(delayed) AS rate FROM history),
    by_carrier AS (SELECT carrier, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
    by_route AS (SELECT origin, dest, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
    by_origin_hour AS (SELECT origin, hour, count(*) AS flights, sum(delayed) AS delayed FROM history GROUP BY ALL),
    flights AS (
        SELECT *, make_date(year, month, day) AS flight_date
        FROM clean_flights WHERE {PARTITION_COLUMN} = $month
    ),
    dates AS (
        SELECT d.flight_date, min(abs(date_diff('day', d.flight_date, h.holiday))) AS days_to_holiday
        FROM (SELECT DISTINCT flight_date FROM flights) AS d CROSS JOIN holidays AS h
        GROUP BY d.flight_date
    )
    SELECT
        {", ".join(f"f.{column}" for column in KEY_COLUMNS)},
        f.hour AS sched_hour,
        isodow(f.flight_date) AS weekday,
        dates.days_to_holiday = 0 AS is_holiday,
        dates.days_to_holiday,
        f.distance,
        f.dest,
        f.year - planes.year AS plane_age,
        {weather},
        {rate("by_carrier")} AS carrier_delay_rate,
        {rate("by_route")} AS route_delay_rate,
        {rate("by_origin_hour")} AS origin_hour_delay_rate,
        f.dep_time IS NULL AS is_cancelled,
        f.dep_delay > {threshold} AS is_delayed,
        f.{PARTITION_COLUMN}
    FROM flights AS f
    CROSS JOIN prior
    JOIN dates USING (flight_date)
    LEFT JOIN planes USING (tailnum)
    LEFT JOIN clean_weather AS w
        ON w.{PARTITION_COLUMN} = $month AND w.origin = f.origin AND w.time_hour = f.time_hour
    LEFT JOIN by_carrier ON by_carrier.carrier = f.carrier
    LEFT JOIN by_route ON by_route.origin = f.origin AND by_route.dest = f.dest
    LEFT JOIN by_origin_hour ON by_origin_hour.origin = f.origin AND by_origin_hour.hour = f.hour
    """
