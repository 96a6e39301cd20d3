"""Point-in-time features: each dataset's feature SQL, run by the platform one period at a time over real
clean data. The leakage test runs over every declared dataset."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import duckdb
import pytest
from conftest import seed_periods, write_csv

from mlplatform.data.features import build_features, history_periods
from mlplatform.data.landing import period_file, reference_file, scan
from mlplatform.data.sql import identifier
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import (
    content_hash,
    ensure_tables,
    load_raw_partition,
    load_reference,
    partition_row_count,
)
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table

FLIGHT_FEATURES, CLEAN_FLIGHTS = '"flights"."features"', '"flights"."clean_flights"'
PEOPLE_FEATURES, CLEAN_PEOPLE = '"employment"."features"', '"employment"."clean_people"'


def _load_periods(con, landing: Path, dataset, periods: list[str]) -> None:
    for period in periods:
        for source in dataset.sources:
            contract = dataset.contracts[source]
            load_raw_partition(con, dataset, contract, period, period_file(landing, dataset, source, period))
            split_partition(con, dataset, contract, period)


def _load_reference(con, landing: Path, dataset) -> None:
    for table in dataset.reference:
        load_reference(con, dataset, dataset.contracts[table], reference_file(landing, dataset, table))


def _build(con, dataset, period: str, **params) -> int:
    features = dataset.declaration.features
    return build_features(con, dataset, period, {**features.params, **params}, features.lookback_periods)


def _hash(con, dataset, period: str) -> str:
    return content_hash(con, dataset.table(FEATURES_TABLE), period)


@pytest.fixture
def warehouse(con, seeded_landing, flights):
    _load_reference(con, seeded_landing, flights)
    _load_periods(con, seeded_landing, flights, ["2013-01", "2013-02", "2013-03"])
    return con


# --- leakage: the generic point-in-time guard, for every declared dataset --------------------------------------


def _alter(con, dataset, source: str, where: str) -> list[str]:
    """Change every value of the clean rows ``where`` selects, except their natural key and time column:
    numbers to 2x+1 (so labels flip: a 10-minute delay becomes 21, employed 0 becomes 1), text gets a suffix,
    booleans flip. Returns the 'source.column's changed."""
    contract = dataset.contracts[source]
    assignments, changed = [], []
    for column, sql_type in contract.sql_types.items():
        if column in contract.natural_key or column == contract.time_column:
            continue
        name = identifier(column)
        value = {
            "BIGINT": f"{name} * 2 + 1",
            "DOUBLE": f"{name} * 2 + 1",
            "VARCHAR": f"{name} || '_'",
            "BOOLEAN": f"NOT {name}",
        }.get(sql_type)
        if value:
            assignments.append(f"{name} = {value}")
            changed.append(f"{source}.{column}")
    con.execute(f"UPDATE {dataset.table(clean_table(source))} SET {', '.join(assignments)} WHERE {where}")
    return changed


def test_later_periods_never_change_a_periods_features(con, seeded_landing, dataset):
    first, period, later = seed_periods(dataset)[:3]
    features = dataset.declaration.features
    history = history_periods(dataset, period, features.lookback_periods)
    assert history == ([first] if features.lookback_periods else [])
    _load_reference(con, seeded_landing, dataset)
    _load_periods(con, seeded_landing, dataset, [first, period])
    rows = _build(con, dataset, period)
    assert rows == partition_row_count(con, dataset.table(clean_table(dataset.sources[0])), period) > 0
    before = _hash(con, dataset, period)
    # Built again from the same data: the same bytes, one row per key, and the views the SQL saw are gone.
    _build(con, dataset, period)
    assert _hash(con, dataset, period) == before
    key = ", ".join(identifier(column) for column in features.key)
    repeated = con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM {dataset.table(FEATURES_TABLE)} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()[0][0]
    assert repeated == 0
    assert con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall() == []

    # A later period arrives and its features are built ...
    _load_periods(con, seeded_landing, dataset, [later])
    _build(con, dataset, later)
    later_before = _hash(con, dataset, later)
    # ... then its labels and values change, and it gains copies of the period's own rows.
    changed = []
    for source in dataset.sources:
        clean = dataset.table(clean_table(source))
        changed += _alter(con, dataset, source, f"period = '{later}'")
        con.execute(
            f"INSERT INTO {clean} SELECT * REPLACE ('{later}' AS period) FROM {clean} WHERE period = '{period}'"
        )
    assert set(features.lineage[dataset.label]) <= set(changed), "the labels' columns were changed"
    _build(con, dataset, later)
    assert _hash(con, dataset, later) != later_before, "the changes reach the SQL"

    assert _build(con, dataset, period) == rows
    assert _hash(con, dataset, period) == before

    # The guard is only meaningful if history really feeds the features: changing the period before does.
    # (Both declared datasets have history; one with lookback_periods: 0 has none to change.)
    if not history:
        return
    for source in dataset.sources:
        _alter(con, dataset, source, f"period = '{first}'")
    _build(con, dataset, period)
    assert _hash(con, dataset, period) != before


# --- flights ---------------------------------------------------------------------------------------------------


def test_features_cover_every_flight_of_the_month(warehouse, flights):
    assert _build(warehouse, flights, "2013-03") == 28_834
    columns = {row[0] for row in warehouse.execute(f"DESCRIBE {FLIGHT_FEATURES}").fetchall()}
    assert set(flights.declaration.features.lineage) <= columns
    assert {*flights.feature_columns, flights.label, "period"} <= columns


def test_adding_later_months_does_not_change_earlier_features(warehouse, seeded_landing, flights):
    _build(warehouse, flights, "2013-03")
    before = _hash(warehouse, flights, "2013-03")
    _load_periods(warehouse, seeded_landing, flights, ["2013-04", "2013-05"])
    _build(warehouse, flights, "2013-03")
    assert _hash(warehouse, flights, "2013-03") == before


def test_earlier_months_do_change_the_features(warehouse, flights):
    """The guard above is only meaningful if history really feeds the features."""
    _build(warehouse, flights, "2013-03")
    before = _hash(warehouse, flights, "2013-03")
    warehouse.execute(f"UPDATE {CLEAN_FLIGHTS} SET dep_delay = 120 WHERE period = '2013-02'")
    _build(warehouse, flights, "2013-03")
    assert _hash(warehouse, flights, "2013-03") != before


def test_historical_rates_use_only_earlier_months(warehouse, flights):
    _build(warehouse, flights, "2013-03")
    expected = warehouse.execute(
        f"SELECT (sum((dep_delay > 15)::INT) + 20 * (SELECT avg((dep_delay > 15)::DOUBLE) FROM {CLEAN_FLIGHTS} "
        "  WHERE period < '2013-03' AND dep_delay IS NOT NULL)) / (count(*) + 20) "
        f"FROM {CLEAN_FLIGHTS} WHERE period < '2013-03' AND dep_delay IS NOT NULL AND carrier = 'UA'"
    ).fetchall()[0][0]
    rates = warehouse.execute(
        f"SELECT DISTINCT carrier_delay_rate FROM {FLIGHT_FEATURES} WHERE period = '2013-03' AND carrier = 'UA'"
    ).fetchall()
    assert rates == [(pytest.approx(expected),)]


def test_the_first_month_has_no_history(warehouse, flights):
    _build(warehouse, flights, "2013-01")
    rates = warehouse.execute(
        "SELECT count(*), count(carrier_delay_rate), count(route_delay_rate), count(origin_hour_delay_rate) "
        f"FROM {FLIGHT_FEATURES}"
    ).fetchall()[0]
    assert rates == (27_004, 0, 0, 0)


def test_history_periods_start_at_the_first_period(flights, employment):
    assert history_periods(flights, "2013-01", 12) == []
    assert history_periods(flights, "2013-03", 12) == ["2013-01", "2013-02"]
    assert history_periods(flights, "2013-03", 1) == ["2013-02"]
    assert history_periods(flights, "2014-03", 12) == flights.periods.between("2013-03", "2014-02")
    assert flights.periods.before("2013-03", 12)[0] == "2012-03"  # the window itself crosses the year
    assert history_periods(employment, "2017", 1) == ["2016"]
    assert history_periods(employment, "2015", 1) == []


def test_labels_and_cancellations(warehouse, flights):
    _build(warehouse, flights, "2013-02")
    counts = warehouse.execute(
        "SELECT count(*) FILTER (WHERE is_cancelled), count(*) FILTER (WHERE is_cancelled AND is_delayed IS NOT NULL), "
        f"avg(is_delayed::DOUBLE) FROM {FLIGHT_FEATURES}"
    ).fetchall()[0]
    departed = warehouse.execute(
        f"SELECT count(*) FILTER (WHERE dep_delay > 15) / count(dep_delay) FROM {CLEAN_FLIGHTS} "
        "WHERE period = '2013-02'"
    ).fetchall()[0][0]
    assert counts[0] == 1261 and counts[1] == 0
    assert counts[2] == pytest.approx(departed) and 0.19 < departed < 0.21


def test_weather_is_joined_at_the_origin_and_scheduled_hour(warehouse, flights):
    _build(warehouse, flights, "2013-01")
    joined = warehouse.execute(
        f"SELECT count(*), count(temp) FROM {FLIGHT_FEATURES} WHERE origin = 'EWR' AND day = 1 AND sched_hour = 5"
    ).fetchall()[0]
    temp = warehouse.execute(
        'SELECT temp FROM "flights"."clean_weather" WHERE origin = \'EWR\' '
        "AND time_hour = TIMESTAMP '2013-01-01 10:00:00'"
    ).fetchall()[0][0]
    features_temp = warehouse.execute(
        f"SELECT DISTINCT temp FROM {FLIGHT_FEATURES} WHERE origin = 'EWR' AND day = 1 AND sched_hour = 5"
    ).fetchall()
    assert joined[0] == joined[1] > 0 and features_temp == [(temp,)]


def test_plane_age_comes_from_the_planes_reference_table(warehouse, flights):
    _build(warehouse, flights, "2013-01")
    ages = warehouse.execute(
        f"SELECT DISTINCT plane_age FROM {FLIGHT_FEATURES} f JOIN {CLEAN_FLIGHTS} c USING (year, month, day, carrier, "
        "flight, origin, sched_dep_time) WHERE c.tailnum = 'N14228' AND f.period = '2013-01'"
    ).fetchall()
    built = warehouse.execute('SELECT year FROM "flights"."planes" WHERE tailnum = \'N14228\'').fetchall()[0][0]
    assert ages == [(2013 - built,)]


def test_a_custom_threshold_changes_the_label(warehouse, flights):
    _build(warehouse, flights, "2013-01", delay_threshold_minutes=60)
    rate = warehouse.execute(f"SELECT avg(is_delayed::DOUBLE) FROM {FLIGHT_FEATURES}").fetchall()[0][0]
    assert rate < 0.1
    _build(warehouse, flights, "2013-01")
    assert warehouse.execute(f"SELECT avg(is_delayed::DOUBLE) FROM {FLIGHT_FEATURES}").fetchall()[0][0] > 0.15


def _us_federal_holidays(year: int) -> dict[dt.date, str]:
    """The old platform's Python rule (mlplatform/features.py before datasets were declarations)."""

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


def _days_to_holiday(day: dt.date) -> int:
    holidays = [h for year in (day.year - 1, day.year, day.year + 1) for h in _us_federal_holidays(year)]
    return min(abs((day - holiday).days) for holiday in holidays)


def test_the_old_holiday_rule(flights):
    holidays = _us_federal_holidays(2013)
    assert holidays[dt.date(2013, 11, 28)] == "Thanksgiving"
    assert holidays[dt.date(2013, 5, 27)] == "Memorial Day"
    assert holidays[dt.date(2013, 9, 2)] == "Labor Day"
    assert len(holidays) == 10


def test_holiday_features_match_the_old_python_rule_on_every_day_of_2013(con, seeded_landing, tmp_path, flights):
    # The first real flight of each day of each month is enough to give every date of 2013 its features.
    ensure_tables(con, flights, flights.contracts["weather"])
    _load_reference(con, seeded_landing, flights)
    for month in seed_periods(flights):
        lines = period_file(seeded_landing, flights, "flights", month).read_text().splitlines()
        first_of_day = {line.split(",", 3)[2]: line for line in reversed(lines[1:])}
        path = write_csv(tmp_path / f"{month}.csv", lines[0], list(first_of_day.values()))
        load_raw_partition(con, flights, flights.contracts["flights"], month, path)
        assert split_partition(con, flights, flights.contracts["flights"], month).quarantined == 0
        assert _build(con, flights, month) == len(first_of_day)
    by_day = con.execute(
        f"SELECT DISTINCT make_date(year, month, day), is_holiday, days_to_holiday, weekday FROM {FLIGHT_FEATURES}"
    ).fetchall()
    assert len(by_day) == 365
    for day, is_holiday, days_to_holiday, weekday in by_day:
        assert days_to_holiday == _days_to_holiday(day), day
        assert is_holiday == (days_to_holiday == 0), day
        assert weekday == day.isoweekday(), day
    holidays = sorted(day for day, is_holiday, *_ in by_day if is_holiday)
    assert holidays == sorted(_us_federal_holidays(2013))
    values = {day: days for day, _, days, _ in by_day}
    assert values[dt.date(2013, 7, 4)] == 0 and values[dt.date(2013, 11, 28)] == 0  # Independence Day, Thanksgiving
    assert values[dt.date(2013, 11, 25)] == 3 and values[dt.date(2013, 7, 1)] == 3
    assert values[dt.date(2013, 12, 31)] == 1  # New Year's Day of 2014


def test_holiday_features_of_january(warehouse, flights):
    _build(warehouse, flights, "2013-01")
    by_day = dict(
        warehouse.execute(
            f"SELECT DISTINCT day, days_to_holiday FROM {FLIGHT_FEATURES} WHERE day IN (1, 3, 20)"
        ).fetchall()
    )
    assert by_day == {1: 0, 3: 2, 20: 1}  # New Year's Day; MLK Day is the 21st


def _next_year(source: Path, target: Path) -> None:
    """2013-01's landing file as 2014-01's: the same rows a year later (year + 1, time_hour shifted a year)."""
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows, header = list(reader), reader.fieldnames
    for row in rows:
        row["year"] = str(int(row["year"]) + 1)
        row["time_hour"] = row["time_hour"].replace("2013-", "2014-", 1)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_a_period_after_the_seed_data_is_taken_in_and_gets_features(con, landing, flights):
    for source in flights.sources:
        _next_year(landing / "flights" / source / "2013-01.csv", landing / "flights" / source / "2014-01.csv")
    folder = landing / "flights" / "flights"
    for name in ("2012-12.csv", "2099-01.csv", "2014_02.csv"):
        (folder / name).write_text("x\n")

    found = scan(landing, flights)

    assert found.periods == [*seed_periods(flights), "2014-01"]
    assert found.ignored == {
        folder / "2012-12.csv": "before the dataset's first period 2013-01",
        folder / "2099-01.csv": "a period in the future",
        folder / "2014_02.csv": "expected a monthly period like 2013-01, got '2014_02'",
    }
    _load_reference(con, landing, flights)
    _load_periods(con, landing, flights, ["2013-12", "2014-01"])
    clean = partition_row_count(con, CLEAN_FLIGHTS, "2014-01")
    assert clean == 27_004 and _build(con, flights, "2014-01") == clean
    rates, holidays = con.execute(
        f"SELECT count(carrier_delay_rate), list(DISTINCT day ORDER BY day) FILTER (WHERE is_holiday) "
        f"FROM {FLIGHT_FEATURES} WHERE period = '2014-01'"
    ).fetchall()[0]
    assert rates == clean  # history from 2013-12
    assert holidays == [1, 20]  # New Year's Day and MLK Day of 2014
    expected = con.execute(
        f"SELECT avg((dep_delay > 15)::DOUBLE) FROM {CLEAN_FLIGHTS} WHERE period = '2014-01'"
    ).fetchall()[0][0]
    labels = con.execute(f"SELECT avg(is_delayed::DOUBLE) FROM {FLIGHT_FEATURES} WHERE period = '2014-01'")
    assert labels.fetchall()[0][0] == pytest.approx(expected)


# --- employment ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def surveys(tmp_path_factory, seeded_landing, employment):
    """2015 and 2016 loaded once for the tests below, which only (re)build features."""
    with duckdb.connect(str(tmp_path_factory.mktemp("surveys") / "warehouse.duckdb")) as con:
        _load_periods(con, seeded_landing, employment, ["2015", "2016"])
        yield con


def test_the_first_survey_year_has_no_history(surveys, employment):
    assert _build(surveys, employment, "2015") == 68_785
    counts = surveys.execute(
        f"SELECT count(*), count(age_schl_employment_rate), count(is_employed) FROM {PEOPLE_FEATURES} "
        "WHERE period = '2015'"
    ).fetchall()
    assert counts == [(68_785, 0, 68_785)]


def test_employment_rates_come_from_the_year_before(surveys, employment):
    assert _build(surveys, employment, "2016") == 69_126
    expected = surveys.execute(
        f"WITH h AS (SELECT CAST(least(floor(AGEP / 5) * 5, 75) AS BIGINT) AS band, SCHL, employed FROM {CLEAN_PEOPLE} "
        "WHERE period = '2015') "
        "SELECT (sum(employed) FILTER (WHERE band = 40 AND SCHL = '21') + 20 * avg(employed)) "
        "/ (count(*) FILTER (WHERE band = 40 AND SCHL = '21') + 20) FROM h"
    ).fetchall()[0][0]
    rates = surveys.execute(
        f"SELECT DISTINCT age_schl_employment_rate FROM {PEOPLE_FEATURES} "
        "WHERE period = '2016' AND age_band = 40 AND SCHL = '21'"
    ).fetchall()
    assert rates == [(pytest.approx(expected),)]
    labels = surveys.execute(
        f"SELECT count(*) FROM {PEOPLE_FEATURES} f JOIN {CLEAN_PEOPLE} c USING (id) "
        "WHERE c.period = '2016' AND f.period = '2016' AND f.is_employed <> (c.employed = 1)"
    ).fetchall()
    assert labels == [(0,)]


def test_age_bands_top_out_at_75(surveys, employment):
    _build(surveys, employment, "2016")
    bands = surveys.execute(
        f"SELECT min(age_band), max(age_band), count(*) FILTER (WHERE age_band <> least(floor(AGEP / 5) * 5, 75)) "
        f"FROM {PEOPLE_FEATURES} WHERE period = '2016'"
    ).fetchall()
    assert bands == [(0, 75, 0)]


def test_a_smaller_smoothing_moves_rates_towards_their_cells(surveys, employment):
    _build(surveys, employment, "2016")
    variance = f"SELECT var_pop(age_schl_employment_rate) FROM {PEOPLE_FEATURES} WHERE period = '2016'"
    smoothed = surveys.execute(variance).fetchall()[0][0]
    _build(surveys, employment, "2016", smoothing=1)
    assert surveys.execute(variance).fetchall()[0][0] > smoothed > 0
    _build(surveys, employment, "2016")  # as declared again, for any test after this one
