"""Data-quality checks over real periods loaded into a real warehouse."""

from __future__ import annotations

import pytest
from conftest import load_references, seed_periods

from mlplatform.data.landing import period_file
from mlplatform.data.quality import (
    natural_key_unique,
    null_shares,
    quarantine_share,
    row_conservation,
    volume_vs_trailing_periods,
)
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import load_raw_partition

RAW, CLEAN, QUARANTINE = '"flights"."raw_flights"', '"flights"."clean_flights"', '"flights"."flights_quarantine"'


def _load_and_split(con, landing, dataset, source, period):
    load_references(con, landing, dataset)
    contract = dataset.contracts[source]
    load_raw_partition(con, dataset, contract, period, period_file(landing, dataset, source, period))
    return split_partition(con, dataset, contract, period)


@pytest.fixture
def january(con, seeded_landing, flights):
    _load_and_split(con, seeded_landing, flights, "flights", "2013-01")
    return con


def test_row_conservation_holds_after_a_split(january, flights):
    verdict = row_conservation(january, flights, flights.contracts["flights"], "2013-01")
    assert verdict.passed and verdict.metadata == {"raw_rows": 27004, "clean_rows": 27004, "quarantined_rows": 0}
    assert verdict.description == "raw 27004 = clean 27004 + quarantined 0"


def test_row_conservation_holds_with_quarantined_rows(con, seeded_landing, flights):
    _load_and_split(con, seeded_landing, flights, "weather", "2013-02")
    verdict = row_conservation(con, flights, flights.contracts["weather"], "2013-02")
    assert verdict.passed and verdict.metadata == {"raw_rows": 2010, "clean_rows": 2009, "quarantined_rows": 1}


def test_row_conservation_fails_when_a_row_goes_missing(january, flights):
    january.execute(f"DELETE FROM {CLEAN} WHERE flight = 1545")
    verdict = row_conservation(january, flights, flights.contracts["flights"], "2013-01")
    assert not verdict.passed and "!=" in verdict.description


def test_every_dataset_conserves_its_rows(con, seeded_landing, dataset):
    period = seed_periods(dataset)[0]
    for source in dataset.sources:
        _load_and_split(con, seeded_landing, dataset, source, period)
        assert row_conservation(con, dataset, dataset.contracts[source], period).passed
        contract = dataset.contracts[source]
        assert natural_key_unique(con, dataset.table(f"clean_{source}"), contract.natural_key, period).passed


def test_natural_key_unique_fails_on_a_repeated_key(january, flights):
    key = flights.contracts["flights"].natural_key
    assert natural_key_unique(january, CLEAN, key, "2013-01").passed
    january.execute(f"INSERT INTO {CLEAN} SELECT * FROM {CLEAN} LIMIT 3")
    verdict = natural_key_unique(january, CLEAN, key, "2013-01")
    assert not verdict.passed and verdict.metadata["repeated_keys"] == 3


def test_quarantine_share_against_its_limit(january, flights):
    january.execute(
        f"INSERT INTO {QUARANTINE} BY NAME SELECT *, 'carrier:str_matches' AS failed_checks FROM {CLEAN} "
        "WHERE carrier = 'UA'"
    )
    january.execute(f"DELETE FROM {CLEAN} WHERE carrier = 'UA'")
    contract = flights.contracts["flights"]
    verdict = quarantine_share(january, flights, contract, "2013-01", max_share=0.01)
    assert not verdict.passed
    assert verdict.metadata["quarantine_share"] == pytest.approx(4637 / 27004)
    assert verdict.metadata["most_common_failure"] == "carrier:str_matches (4637 rows)"
    assert quarantine_share(january, flights, contract, "2013-01", max_share=0.5).passed


def test_quarantine_share_of_the_real_gust(con, seeded_landing, flights):
    _load_and_split(con, seeded_landing, flights, "weather", "2013-02")
    verdict = quarantine_share(con, flights, flights.contracts["weather"], "2013-02", max_share=0.01)
    assert verdict.passed and verdict.metadata["quarantine_share"] == pytest.approx(1 / 2010)
    assert verdict.metadata["most_common_failure"] == "wind_speed:in_range(0.0, 150.0) (1 rows)"


def test_volume_check_passes_without_history_and_flags_a_collapse(con, seeded_landing, flights):
    weather = flights.contracts["weather"]
    for month in ("2013-01", "2013-02", "2013-03"):
        load_raw_partition(con, flights, weather, month, period_file(seeded_landing, flights, "weather", month))
    raw = '"flights"."raw_weather"'
    assert volume_vs_trailing_periods(con, raw, "2013-01", 3, 0.3).description.startswith("no earlier")
    normal = volume_vs_trailing_periods(con, raw, "2013-03", 3, 0.3)
    assert normal.passed and normal.metadata["periods_compared"] == 2
    assert normal.metadata["trailing_mean"] == (2226 + 2010) / 2
    con.execute(f"DELETE FROM {raw} WHERE period = '2013-03' AND origin <> 'EWR'")
    collapsed = volume_vs_trailing_periods(con, raw, "2013-03", 3, 0.3)
    assert not collapsed.passed and collapsed.metadata["relative_change"] < -0.6


def test_volume_of_real_survey_years_within_the_declared_tolerance(con, seeded_landing, employment):
    people = employment.contracts["people"]
    for year in ("2015", "2016", "2017"):
        load_raw_partition(con, employment, people, year, period_file(seeded_landing, employment, "people", year))
    volume = employment.declaration.volume
    verdict = volume_vs_trailing_periods(
        con, '"employment"."raw_people"', "2017", volume.trailing_periods, volume.tolerance
    )
    assert verdict.passed and verdict.metadata["periods_compared"] == 2
    assert verdict.metadata["relative_change"] == pytest.approx(69_635 / ((68_785 + 69_126) / 2) - 1)
    # Only periods before the one checked count: one period back compares with 2016 alone.
    one_back = volume_vs_trailing_periods(con, '"employment"."raw_people"', "2017", 1, volume.tolerance)
    assert one_back.metadata["trailing_mean"] == 69_126


def test_null_shares_flag_a_column_over_its_limit(january, flights):
    contract = flights.contracts["flights"]
    assert null_shares(january, contract, RAW, "2013-01").passed
    january.execute(f"UPDATE {RAW} SET tailnum = NULL WHERE carrier IN ('UA', 'EV')")
    verdict = null_shares(january, contract, RAW, "2013-01")
    assert not verdict.passed and "tailnum" in verdict.description
    assert verdict.metadata["null_share/tailnum"] > 0.05
    assert verdict.metadata["null_share/dep_time"] == pytest.approx(521 / 27004)


def test_null_shares_of_a_column_that_allows_none(con, seeded_landing, employment):
    _load_and_split(con, seeded_landing, employment, "people", "2015")
    contract, raw = employment.contracts["people"], '"employment"."raw_people"'
    assert null_shares(con, contract, raw, "2015").passed
    con.execute(f"UPDATE {raw} SET MIG = NULL WHERE id = (SELECT min(id) FROM {raw})")
    verdict = null_shares(con, contract, raw, "2015")
    assert not verdict.passed and verdict.description == "null shares above their limits: MIG 0.00% > 0%"
