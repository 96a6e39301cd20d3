import pytest

from mlplatform.contracts import FLIGHTS, WEATHER
from mlplatform.quality import (
    natural_key_unique,
    null_shares,
    quarantine_share,
    row_conservation,
    volume_vs_trailing_months,
)
from mlplatform.validation import split_partition
from mlplatform.warehouse import load_raw_partition


@pytest.fixture
def january(con, seeded_landing):
    load_raw_partition(con, FLIGHTS, "2013-01", seeded_landing / "flights" / "2013-01.csv")
    split_partition(con, FLIGHTS, "2013-01")
    return con


def test_row_conservation_holds_after_a_split(january):
    verdict = row_conservation(january, FLIGHTS, "2013-01")
    assert verdict.passed and verdict.metadata == {"raw_rows": 27004, "clean_rows": 27004, "quarantined_rows": 0}


def test_row_conservation_fails_when_a_row_goes_missing(january):
    january.execute("DELETE FROM clean_flights WHERE flight = 1545")
    verdict = row_conservation(january, FLIGHTS, "2013-01")
    assert not verdict.passed and "!=" in verdict.description


def test_natural_key_unique_fails_on_a_repeated_key(january):
    assert natural_key_unique(january, "clean_flights", FLIGHTS.natural_key, "2013-01").passed
    january.execute("INSERT INTO clean_flights SELECT * FROM clean_flights LIMIT 3")
    verdict = natural_key_unique(january, "clean_flights", FLIGHTS.natural_key, "2013-01")
    assert not verdict.passed and verdict.metadata["repeated_keys"] == 3


def test_quarantine_share_against_its_limit(january):
    january.execute(
        "INSERT INTO flights_quarantine SELECT *, 'carrier:str_matches' FROM clean_flights WHERE carrier = 'UA'"
    )
    january.execute("DELETE FROM clean_flights WHERE carrier = 'UA'")
    verdict = quarantine_share(january, FLIGHTS, "2013-01", max_share=0.01)
    assert not verdict.passed
    assert verdict.metadata["quarantine_share"] == pytest.approx(4637 / 27004)
    assert verdict.metadata["most_common_failure"] == "carrier:str_matches (4637 rows)"
    assert quarantine_share(january, FLIGHTS, "2013-01", max_share=0.5).passed


def test_volume_check_passes_without_history_and_flags_a_collapse(con, seeded_landing):
    for month in ("2013-01", "2013-02", "2013-03"):
        load_raw_partition(con, WEATHER, month, seeded_landing / "weather" / f"{month}.csv")
    assert volume_vs_trailing_months(con, "raw_weather", "2013-01", 3, 0.3).description.startswith("no earlier")
    normal = volume_vs_trailing_months(con, "raw_weather", "2013-03", 3, 0.3)
    assert normal.passed and normal.metadata["months_compared"] == 2
    con.execute("DELETE FROM raw_weather WHERE partition_month = '2013-03' AND origin <> 'EWR'")
    collapsed = volume_vs_trailing_months(con, "raw_weather", "2013-03", 3, 0.3)
    assert not collapsed.passed and collapsed.metadata["relative_change"] < -0.6


def test_null_shares_flag_a_column_over_its_limit(january):
    assert null_shares(january, FLIGHTS, "raw_flights", "2013-01").passed
    january.execute("UPDATE raw_flights SET tailnum = NULL WHERE carrier IN ('UA', 'EV')")
    verdict = null_shares(january, FLIGHTS, "raw_flights", "2013-01")
    assert not verdict.passed and "tailnum" in verdict.description
    assert verdict.metadata["null_share/tailnum"] > 0.05
