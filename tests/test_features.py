import datetime as dt

import pytest

from mlplatform.contracts import FLIGHTS, PLANES, WEATHER
from mlplatform.features import COLUMN_LINEAGE, FeatureParams, build_features, history_start, us_federal_holidays
from mlplatform.validation import split_partition
from mlplatform.warehouse import content_hash, load_raw_partition, load_reference


def _load_months(con, landing, months):
    for month in months:
        for contract in (FLIGHTS, WEATHER):
            load_raw_partition(con, contract, month, landing / contract.name / f"{month}.csv")
            split_partition(con, contract, month)


@pytest.fixture
def warehouse(con, seeded_landing):
    load_reference(con, PLANES, seeded_landing / "reference" / "planes.csv")
    _load_months(con, seeded_landing, ["2013-01", "2013-02", "2013-03"])
    return con


def test_features_cover_every_flight_of_the_month(warehouse):
    assert build_features(warehouse, "2013-03") == 28_834
    columns = {row[0] for row in warehouse.execute("DESCRIBE flight_features").fetchall()}
    assert set(COLUMN_LINEAGE) <= columns


def test_adding_later_months_does_not_change_earlier_features(warehouse, seeded_landing):
    build_features(warehouse, "2013-03")
    before = content_hash(warehouse, "flight_features", "2013-03")
    _load_months(warehouse, seeded_landing, ["2013-04", "2013-05"])
    build_features(warehouse, "2013-03")
    assert content_hash(warehouse, "flight_features", "2013-03") == before


def test_earlier_months_do_change_the_features(warehouse):
    """The guard above is only meaningful if history really feeds the features."""
    build_features(warehouse, "2013-03")
    before = content_hash(warehouse, "flight_features", "2013-03")
    warehouse.execute("UPDATE clean_flights SET dep_delay = 120 WHERE partition_month = '2013-02'")
    build_features(warehouse, "2013-03")
    assert content_hash(warehouse, "flight_features", "2013-03") != before


def test_historical_rates_use_only_earlier_months(warehouse):
    build_features(warehouse, "2013-03")
    expected = warehouse.execute(
        "SELECT (sum((dep_delay > 15)::INT) + 20 * (SELECT avg((dep_delay > 15)::DOUBLE) FROM clean_flights "
        "  WHERE partition_month < '2013-03' AND dep_delay IS NOT NULL)) / (count(*) + 20) "
        "FROM clean_flights WHERE partition_month < '2013-03' AND dep_delay IS NOT NULL AND carrier = 'UA'"
    ).fetchall()[0][0]
    rates = warehouse.execute(
        "SELECT DISTINCT carrier_delay_rate FROM flight_features WHERE partition_month = '2013-03' AND carrier = 'UA'"
    ).fetchall()
    assert rates == [(pytest.approx(expected),)]


def test_the_first_month_has_no_history(warehouse):
    build_features(warehouse, "2013-01")
    rates = warehouse.execute(
        "SELECT count(carrier_delay_rate), count(route_delay_rate), count(origin_hour_delay_rate) FROM flight_features"
    ).fetchall()[0]
    assert rates == (0, 0, 0)


def test_labels_and_cancellations(warehouse):
    build_features(warehouse, "2013-02")
    counts = warehouse.execute(
        "SELECT count(*) FILTER (WHERE is_cancelled), count(*) FILTER (WHERE is_cancelled AND is_delayed IS NOT NULL), "
        "avg(is_delayed::DOUBLE) FROM flight_features"
    ).fetchall()[0]
    departed = warehouse.execute(
        "SELECT count(*) FILTER (WHERE dep_delay > 15) / count(dep_delay) FROM clean_flights "
        "WHERE partition_month = '2013-02'"
    ).fetchall()[0][0]
    assert counts[0] == 1261 and counts[1] == 0
    assert counts[2] == pytest.approx(departed) and 0.19 < departed < 0.21


def test_weather_is_joined_at_the_origin_and_scheduled_hour(warehouse):
    build_features(warehouse, "2013-01")
    joined = warehouse.execute(
        "SELECT count(*), count(temp) FROM flight_features WHERE origin = 'EWR' AND day = 1 AND sched_hour = 5"
    ).fetchall()[0]
    temp = warehouse.execute(
        "SELECT temp FROM clean_weather WHERE origin = 'EWR' AND time_hour = TIMESTAMP '2013-01-01 10:00:00'"
    ).fetchall()[0][0]
    features_temp = warehouse.execute(
        "SELECT DISTINCT temp FROM flight_features WHERE origin = 'EWR' AND day = 1 AND sched_hour = 5"
    ).fetchall()
    assert joined[0] == joined[1] > 0 and features_temp == [(temp,)]


def test_holiday_features(warehouse):
    build_features(warehouse, "2013-01")
    by_day = dict(
        warehouse.execute(
            "SELECT DISTINCT day, days_to_holiday FROM flight_features WHERE day IN (1, 3, 20)"
        ).fetchall()
    )
    assert by_day == {1: 0, 3: 2, 20: 1}  # New Year's Day; MLK Day is the 21st


def test_us_federal_holidays_of_2013():
    holidays = us_federal_holidays(2013)
    assert holidays[dt.date(2013, 11, 28)] == "Thanksgiving"
    assert holidays[dt.date(2013, 5, 27)] == "Memorial Day"
    assert holidays[dt.date(2013, 9, 2)] == "Labor Day"
    assert len(holidays) == 10


def test_history_start_crosses_the_year():
    assert history_start("2013-03", 12) == "2012-03"
    assert history_start("2013-03", 2) == "2013-01"


def test_a_custom_threshold_changes_the_label(warehouse):
    build_features(
        warehouse, "2013-01", FeatureParams(lookback_months=12, smoothing_flights=20, delay_threshold_minutes=60)
    )
    rate = warehouse.execute("SELECT avg(is_delayed::DOUBLE) FROM flight_features").fetchall()[0][0]
    assert rate < 0.1
