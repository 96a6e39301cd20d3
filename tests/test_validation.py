import pytest
from conftest import write_csv

from mlplatform.contracts import AIRPORTS, FLIGHTS, PLANES, WEATHER
from mlplatform.validation import reference_violations, split_partition
from mlplatform.warehouse import content_hash, load_raw_partition, load_reference

HEADER = ",".join(FLIGHTS.columns)
GOOD = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"


def _flight(**changes) -> str:
    values = dict(zip(FLIGHTS.columns, GOOD.split(","), strict=True))
    values.update({key: str(value) for key, value in changes.items()})
    return ",".join(values[column] for column in FLIGHTS.columns)


BROKEN = {
    "unknown carrier": (_flight(carrier="ZZZ", flight=1), "carrier:str_matches('^[A-Z0-9]{2}$')"),
    "missing distance": (_flight(distance="NA", flight=2), "distance:not_nullable"),
    "hour out of range": (
        _flight(hour=99, sched_dep_time=9915, flight=3),
        "hour:in_range(0, 23); sched_dep_time:sched_dep_time_hhmm",
    ),
    "other month": (_flight(month=2, flight=4), "month:equal_to(1)"),
    "inconsistent schedule": (_flight(minute=16, flight=5), "flights:sched_dep_time_is_hour_minute"),
    "not a NYC airport": (_flight(origin="BOS", flight=6), "origin:isin(['EWR', 'JFK', 'LGA'])"),
    "duplicate": (_flight(), "natural_key:duplicate"),
}


@pytest.fixture
def broken_month(con, tmp_path):
    cancelled = _flight(dep_time="NA", dep_delay="NA", arr_time="NA", arr_delay="NA", air_time="NA", flight=7)
    rows = [GOOD, cancelled] + [row for row, _ in BROKEN.values()]
    load_raw_partition(con, FLIGHTS, "2013-01", write_csv(tmp_path / "2013-01.csv", HEADER, rows))
    return con


def test_broken_rows_are_quarantined_with_the_check_they_failed(broken_month):
    counts = split_partition(broken_month, FLIGHTS, "2013-01")
    assert (counts.raw, counts.clean, counts.quarantined) == (9, 2, 7)
    quarantined = dict(broken_month.execute("SELECT flight, failed_checks FROM flights_quarantine").fetchall())
    assert sorted(quarantined.values()) == sorted(check for _, check in BROKEN.values())
    # The quarantine keeps the whole row, so it can be fixed and replayed.
    row = broken_month.execute("SELECT * EXCLUDE (failed_checks) FROM flights_quarantine WHERE flight = 2").fetchall()
    assert row[0][:3] == (2013, 1, 1) and row[0][-2:] == ("2013-01", "2013-01.csv")


def test_a_cancelled_flight_is_valid(broken_month):
    split_partition(broken_month, FLIGHTS, "2013-01")
    assert broken_month.execute("SELECT count(*) FROM clean_flights WHERE flight = 7").fetchall()[0][0] == 1


def test_a_row_failing_two_checks_lists_both(con, tmp_path):
    row = _flight(carrier="zz", distance="NA")
    load_raw_partition(con, FLIGHTS, "2013-01", write_csv(tmp_path / "2013-01.csv", HEADER, [row]))
    split_partition(con, FLIGHTS, "2013-01")
    failed = con.execute("SELECT failed_checks FROM flights_quarantine").fetchall()[0][0]
    assert failed == "carrier:str_matches('^[A-Z0-9]{2}$'); distance:not_nullable"


def test_repeats_with_a_missing_key_column_are_still_duplicates(con, tmp_path):
    row = _flight(carrier="NA")
    load_raw_partition(con, FLIGHTS, "2013-01", write_csv(tmp_path / "2013-01.csv", HEADER, [row, row]))
    split_partition(con, FLIGHTS, "2013-01")
    failed = sorted(r[0] for r in con.execute("SELECT failed_checks FROM flights_quarantine").fetchall())
    assert failed == ["carrier:not_nullable", "carrier:not_nullable; natural_key:duplicate"]


def test_real_weather_quarantines_the_1048_mph_gust(con, seeded_landing):
    load_raw_partition(con, WEATHER, "2013-02", seeded_landing / "weather" / "2013-02.csv")
    counts = split_partition(con, WEATHER, "2013-02")
    assert (counts.raw, counts.clean, counts.quarantined) == (2010, 2009, 1)
    speed, failed = con.execute("SELECT wind_speed, failed_checks FROM weather_quarantine").fetchall()[0]
    assert speed > 1000 and failed == "wind_speed:in_range(0.0, 150.0)"


def test_small_batches_give_the_same_split_as_one_batch(con, seeded_landing, tmp_path):
    path = seeded_landing / "flights" / "2013-01.csv"
    # A second copy of some rows: duplicates that land in different batches must still be caught.
    rows = path.read_text().splitlines()
    doubled = write_csv(tmp_path / "2013-01.csv", rows[0], rows[1:] + rows[1:500])
    load_raw_partition(con, FLIGHTS, "2013-01", doubled)
    whole = split_partition(con, FLIGHTS, "2013-01", batch_rows=1_000_000)
    hashes = content_hash(con, "clean_flights", "2013-01"), content_hash(con, "flights_quarantine", "2013-01")
    batched = split_partition(con, FLIGHTS, "2013-01", batch_rows=1_000)
    assert whole == batched and whole.quarantined == 499
    assert (content_hash(con, "clean_flights", "2013-01"), content_hash(con, "flights_quarantine", "2013-01")) == hashes


def test_revalidating_replaces_the_month(broken_month):
    first = split_partition(broken_month, FLIGHTS, "2013-01")
    assert split_partition(broken_month, FLIGHTS, "2013-01") == first
    assert broken_month.execute("SELECT count(*) FROM flights_quarantine").fetchall()[0][0] == 7


def test_real_reference_tables_meet_their_contracts(con, seeded_landing):
    for contract in (AIRPORTS, PLANES):
        load_reference(con, contract, seeded_landing / "reference" / f"{contract.name}.csv")
        assert reference_violations(con, contract).is_empty()


def test_reference_violations_name_the_key_and_check(con, tmp_path):
    header = ",".join(PLANES.columns)
    rows = [
        "N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan",
        "N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan",
        "N2,2004,Fixed wing,EMBRAER,E145,12,55,NA,Turbo-fan",
    ]
    load_reference(con, PLANES, write_csv(tmp_path / "planes.csv", header, rows))
    violations = reference_violations(con, PLANES)
    assert sorted(violations.rows()) == [("N1", "natural_key:duplicate"), ("N2", "engines:in_range(1, 8)")]
