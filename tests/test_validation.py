"""Validation: each raw period splits into clean rows and quarantined rows, with the checks each one failed."""

from __future__ import annotations

import pytest
from conftest import seed_periods, write_csv

from mlplatform.data.landing import period_file, reference_file
from mlplatform.data.validation import reference_violations, split_partition
from mlplatform.data.warehouse import content_hash, load_raw_partition, load_reference

GOOD = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"
PERSON = "1,48.0,21,1,0,2,0,1,1,4,2,1,2,2,2,2,1,2016,1"
CLEAN_FLIGHTS, QUARANTINE = '"flights"."clean_flights"', '"flights"."flights_quarantine"'
CLEAN_PEOPLE, PEOPLE_QUARANTINE = '"employment"."clean_people"', '"employment"."people_quarantine"'


def _row(columns: list[str], good: str, **changes) -> str:
    values = dict(zip(columns, good.split(","), strict=True))
    values.update({key: str(value) for key, value in changes.items()})
    return ",".join(values[column] for column in columns)


@pytest.fixture
def flight(flights):
    return lambda **changes: _row(flights.contracts["flights"].columns, GOOD, **changes)


@pytest.fixture
def person(employment):
    return lambda **changes: _row(employment.contracts["people"].columns, PERSON, **changes)


@pytest.fixture(autouse=True)
def references(con, seeded_landing, flights):
    """Flights' carrier, origin and dest are checked against its reference tables: they are loaded first."""
    for table in flights.reference:
        load_reference(con, flights, flights.contracts[table], reference_file(seeded_landing, flights, table))


def _load(con, dataset, source, period, path):
    return load_raw_partition(con, dataset, dataset.contracts[source], period, path)


def _split(con, dataset, source, period, **options):
    return split_partition(con, dataset, dataset.contracts[source], period, **options)


def _write(dataset, source, tmp_path, name, rows):
    return write_csv(tmp_path / name, ",".join(dataset.contracts[source].columns), rows)


def _broken(flight) -> dict[str, tuple[str, str]]:
    return {
        "malformed carrier": (
            flight(carrier="ZZZ", flight=1),
            "carrier:references(airlines.carrier); carrier:str_matches('^[A-Z0-9]{2}$')",
        ),
        "carrier no airline has": (flight(carrier="ZZ", flight=13), "carrier:references(airlines.carrier)"),
        "destination no airport has": (flight(dest="XYZ", flight=14), "dest:references(airports.faa)"),
        "missing distance": (flight(distance="NA", flight=2), "distance:not_nullable"),
        "hour out of range": (
            flight(hour=99, sched_dep_time=9915, flight=3),
            "hour:in_range(0, 23); sched_dep_time:sched_dep_time_hhmm",
        ),
        # 05:00 UTC on 1 February is midnight in New York: February, whatever the month column says.
        "other month": (flight(time_hour="2013-02-01T05:00:00Z", flight=4), "time_hour:in_period"),
        "inconsistent schedule": (flight(minute=16, flight=5), "flights:sched_dep_time_is_hour_minute"),
        "not a NYC airport": (flight(origin="BOS", flight=6), "origin:isin(['EWR', 'JFK', 'LGA'])"),
        "duplicate": (flight(), "natural_key:duplicate"),
        "not a clock time": (flight(dep_time=1375, flight=8), "dep_time:dep_time_hhmm"),
        "arrival past midnight": (flight(arr_time=2460, flight=9), "arr_time:arr_time_hhmm"),
        # 04:59 UTC on 1 January is still 31 December in New York.
        "the year before": (flight(time_hour="2013-01-01T04:59:00Z", flight=10), "time_hour:in_period"),
    }


@pytest.fixture
def broken_month(con, tmp_path, flights, flight):
    cancelled = flight(dep_time="NA", dep_delay="NA", arr_time="NA", arr_delay="NA", air_time="NA", flight=7)
    # Late on 31 January in New York is 1 February in UTC: still January's.
    late = flight(time_hour="2013-02-01T04:00:00Z", day=31, hour=23, sched_dep_time=2300, minute=0, flight=11)
    midnight = flight(dep_time=2400, flight=12)
    rows = [GOOD, cancelled, late, midnight] + [row for row, _ in _broken(flight).values()]
    _load(con, flights, "flights", "2013-01", _write(flights, "flights", tmp_path, "2013-01.csv", rows))
    return con


def test_broken_rows_are_quarantined_with_the_check_they_failed(broken_month, flights, flight):
    broken = _broken(flight)
    counts = _split(broken_month, flights, "flights", "2013-01")
    assert (counts.raw, counts.clean, counts.quarantined) == (4 + len(broken), 4, len(broken))
    quarantined = broken_month.execute(f"SELECT flight, failed_checks FROM {QUARANTINE}").fetchall()
    assert sorted(check for _, check in quarantined) == sorted(check for _, check in broken.values())
    # The quarantine keeps the whole row, its line in the file and each check it failed with the raw value, so it
    # can be fixed and replayed.
    row = broken_month.execute(
        f"SELECT * EXCLUDE (failed_checks, source_line, failures) FROM {QUARANTINE} WHERE flight = 2"
    ).fetchall()
    assert row[0][:3] == (2013, 1, 1) and row[0][-2:] == ("2013-01", "2013-01.csv")
    line, failures = broken_month.execute(
        f"SELECT source_line, failures FROM {QUARANTINE} WHERE flight = 3"
    ).fetchall()[0]
    assert line == 10 and failures == [
        {"column_name": "hour", "check_name": "in_range(0, 23)", "raw_value": "99"},
        {"column_name": "sched_dep_time", "check_name": "sched_dep_time_hhmm", "raw_value": "9915"},
    ]
    duplicate = broken_month.execute(
        f"SELECT failures FROM {QUARANTINE} WHERE failed_checks LIKE 'natural%'"
    ).fetchall()
    assert duplicate[0][0][0]["raw_value"] == "2013, 1, 1, UA, 1545, EWR, 515"


def test_valid_edge_cases_are_clean(broken_month, flights):
    _split(broken_month, flights, "flights", "2013-01")
    clean = {flight for (flight,) in broken_month.execute(f"SELECT flight FROM {CLEAN_FLIGHTS}").fetchall()}
    # the good row (1545) and its duplicate's first copy, a cancelled flight, a late-evening flight whose UTC hour
    # is in February, and a departure at midnight written 2400
    assert clean == {1545, 7, 11, 12}


def test_a_row_failing_two_checks_lists_both(con, tmp_path, flights, flight):
    row = flight(carrier="zz", distance="NA")
    _load(con, flights, "flights", "2013-01", _write(flights, "flights", tmp_path, "2013-01.csv", [row]))
    _split(con, flights, "flights", "2013-01")
    failed = con.execute(f"SELECT failed_checks FROM {QUARANTINE}").fetchall()[0][0]
    assert failed == (
        "carrier:references(airlines.carrier); carrier:str_matches('^[A-Z0-9]{2}$'); distance:not_nullable"
    )


def test_repeats_with_a_missing_key_column_are_still_duplicates(con, tmp_path, flights, flight):
    row = flight(carrier="NA")
    _load(con, flights, "flights", "2013-01", _write(flights, "flights", tmp_path, "2013-01.csv", [row, row]))
    _split(con, flights, "flights", "2013-01")
    failed = sorted(r[0] for r in con.execute(f"SELECT failed_checks FROM {QUARANTINE}").fetchall())
    assert failed == ["carrier:not_nullable", "carrier:not_nullable; natural_key:duplicate"]


def test_real_weather_quarantines_the_1048_mph_gust(con, seeded_landing, flights):
    _load(con, flights, "weather", "2013-02", period_file(seeded_landing, flights, "weather", "2013-02"))
    counts = _split(con, flights, "weather", "2013-02")
    assert (counts.raw, counts.clean, counts.quarantined) == (2010, 2009, 1)
    speed, failed = con.execute('SELECT wind_speed, failed_checks FROM "flights"."weather_quarantine"').fetchall()[0]
    assert speed > 1000 and failed == "wind_speed:in_range(0.0, 150.0)"


def test_every_real_period_of_every_dataset_is_in_its_period(con, seeded_landing, dataset):
    """The seed cuts periods as validation does: no seeded row fails the in-period check."""
    period = seed_periods(dataset)[-1]
    for source in dataset.sources:
        _load(con, dataset, source, period, period_file(seeded_landing, dataset, source, period))
        counts = _split(con, dataset, source, period)
        assert counts.raw == counts.clean + counts.quarantined > 0
        failed = con.execute(
            f"SELECT count(*) FROM {dataset.table(source + '_quarantine')} WHERE failed_checks LIKE '%in_period%'"
        ).fetchall()[0][0]
        assert failed == 0


def test_a_file_of_the_wrong_period_is_quarantined_whole(con, seeded_landing, employment):
    """Loading 2016's file as 2017 (a misnamed file) quarantines every row as out of its period."""
    _load(con, employment, "people", "2017", period_file(seeded_landing, employment, "people", "2016"))
    counts = _split(con, employment, "people", "2017")
    assert (counts.raw, counts.clean, counts.quarantined) == (69_126, 0, 69_126)
    assert con.execute(f"SELECT DISTINCT failed_checks FROM {PEOPLE_QUARANTINE}").fetchall() == [("year:in_period",)]


def test_real_survey_years_are_clean(con, seeded_landing, employment):
    _load(con, employment, "people", "2015", period_file(seeded_landing, employment, "people", "2015"))
    counts = _split(con, employment, "people", "2015")
    assert (counts.raw, counts.clean, counts.quarantined) == (68_785, 68_785, 0)


def test_people_rows_failing_their_checks(con, tmp_path, employment, person):
    broken = {
        2: (person(id=2, year=2017), "year:in_period"),
        3: (person(id=3, SCHL="25"), "SCHL:str_matches('^([0-9]|1[0-9]|2[0-4])$')"),
        # a two-year-old with a school grade
        4: (person(id=4, AGEP="2.0", DREM="0", MIL="0"), "people:schl_na_under_3"),
        5: (person(id=5, employed=2), "employed:isin([0, 1])"),
        6: (person(id=6, MIL="0", SEX="3"), "SEX:isin(['1', '2']); people:mil_na_under_17"),
        7: (person(id=7, AGEP="NA"), "AGEP:not_nullable"),
        -8: (person(id=-8), "id:greater_than_or_equal_to(0)"),
        1: (person(), "natural_key:duplicate"),
    }
    child = person(id=9, AGEP="0.0", SCHL="0", MIG="0", DREM="0", MIL="0")
    rows = [PERSON, child, *(row for row, _ in broken.values())]
    _load(con, employment, "people", "2016", _write(employment, "people", tmp_path, "2016.csv", rows))
    counts = _split(con, employment, "people", "2016")
    assert (counts.raw, counts.clean, counts.quarantined) == (10, 2, 8)
    quarantined = dict(con.execute(f"SELECT id, failed_checks FROM {PEOPLE_QUARANTINE}").fetchall())
    assert quarantined == {key: check for key, (_, check) in broken.items()}
    assert sorted(r[0] for r in con.execute(f"SELECT id FROM {CLEAN_PEOPLE}").fetchall()) == [1, 9]


def test_small_batches_give_the_same_split_as_one_batch(con, seeded_landing, tmp_path, flights):
    path = period_file(seeded_landing, flights, "flights", "2013-01")
    # A second copy of some rows: duplicates that land in different batches must still be caught.
    rows = path.read_text().splitlines()
    doubled = write_csv(tmp_path / "2013-01.csv", rows[0], rows[1:] + rows[1:500])
    _load(con, flights, "flights", "2013-01", doubled)
    whole = _split(con, flights, "flights", "2013-01", batch_rows=1_000_000)
    hashes = content_hash(con, CLEAN_FLIGHTS, "2013-01"), content_hash(con, QUARANTINE, "2013-01")
    batched = _split(con, flights, "flights", "2013-01", batch_rows=1_000)
    assert whole == batched and whole.quarantined == 499
    assert (content_hash(con, CLEAN_FLIGHTS, "2013-01"), content_hash(con, QUARANTINE, "2013-01")) == hashes


def test_revalidating_replaces_the_period(broken_month, flights, flight):
    first = _split(broken_month, flights, "flights", "2013-01")
    assert _split(broken_month, flights, "flights", "2013-01") == first
    count = broken_month.execute(f"SELECT count(*) FROM {QUARANTINE}").fetchall()[0][0]
    assert count == len(_broken(flight))


def test_other_periods_are_untouched_by_a_split(con, seeded_landing, flights):
    for month in ("2013-01", "2013-02"):
        _load(con, flights, "weather", month, period_file(seeded_landing, flights, "weather", month))
        _split(con, flights, "weather", month)
    january = content_hash(con, '"flights"."clean_weather"', "2013-01")
    _split(con, flights, "weather", "2013-02")
    assert content_hash(con, '"flights"."clean_weather"', "2013-01") == january


def test_real_reference_tables_meet_their_contracts(con, seeded_landing, flights):
    for table in flights.reference:
        contract = flights.contracts[table]
        load_reference(con, flights, contract, reference_file(seeded_landing, flights, table))
        assert reference_violations(con, flights, contract).is_empty()


def test_reference_violations_name_the_key_and_check(con, tmp_path, flights):
    contract = flights.contracts["planes"]
    rows = [
        "N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan",
        "N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan",
        "N2,2004,Fixed wing,EMBRAER,E145,12,55,NA,Turbo-fan",
    ]
    load_reference(con, flights, contract, _write(flights, "planes", tmp_path, "planes.csv", rows))
    violations = reference_violations(con, flights, contract)
    assert sorted(violations.rows()) == [("N1", "natural_key:duplicate"), ("N2", "engines:in_range(1, 8)")]
