import csv
import zipfile

import pytest

from mlplatform.landing import LandingFileError, monthly_file, reference_file, seed, source_data_dir

FLIGHTS_IN_2013 = 336_776


def _rows(path):
    with path.open() as handle:
        return sum(1 for _ in handle) - 1


def test_seed_splits_every_real_flight_into_its_month(seeded_landing):
    files = sorted((seeded_landing / "flights").glob("*.csv"))
    assert [f.stem for f in files] == [f"2013-{m:02d}" for m in range(1, 13)]
    assert sum(_rows(f) for f in files) == FLIGHTS_IN_2013
    with (seeded_landing / "flights" / "2013-07.csv").open() as handle:
        months = {row["month"] for row in csv.DictReader(handle)}
    assert months == {"7"}


def test_seed_keeps_the_source_format(seeded_landing):
    with zipfile.ZipFile(source_data_dir() / "flights.csv.zip") as archive:
        source_lines = archive.read("flights.csv").decode().splitlines()[:3]
    seeded_lines = (seeded_landing / "flights" / "2013-01.csv").read_text().splitlines()[:3]
    assert seeded_lines == source_lines
    assert "NA" in (seeded_landing / "weather" / "2013-01.csv").read_text()


def test_seed_is_idempotent_and_leaves_unchanged_files_alone(landing):
    target = landing / "flights" / "2013-02.csv"
    before = target.stat().st_mtime_ns
    assert seed(landing, ["2013-02"]) == []
    assert target.stat().st_mtime_ns == before


def test_seed_rewrites_a_changed_file(landing):
    target = landing / "weather" / "2013-03.csv"
    original = target.read_bytes()
    target.write_text("tampered\n")
    assert seed(landing, ["2013-03"]) == [target]
    assert target.read_bytes() == original


def test_seed_subset_writes_only_those_months(tmp_path):
    written = seed(tmp_path / "landing", ["2013-05"])
    assert sorted(p.relative_to(tmp_path / "landing").as_posix() for p in written) == [
        "flights/2013-05.csv",
        "reference/airlines.csv",
        "reference/airports.csv",
        "reference/planes.csv",
        "weather/2013-05.csv",
    ]


def test_monthly_file_finds_csv_or_parquet(tmp_path):
    (tmp_path / "flights").mkdir()
    (tmp_path / "flights" / "2013-01.parquet").write_bytes(b"")
    assert monthly_file(tmp_path, "flights", "2013-01").name == "2013-01.parquet"


def test_monthly_file_missing_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlplatform seed"):
        monthly_file(tmp_path, "flights", "2013-01")


def test_monthly_file_refuses_two_candidates(tmp_path):
    (tmp_path / "flights").mkdir()
    for suffix in (".csv", ".parquet"):
        (tmp_path / "flights" / f"2013-01{suffix}").write_bytes(b"")
    with pytest.raises(LandingFileError, match="keep one"):
        monthly_file(tmp_path, "flights", "2013-01")


def test_reference_file_missing_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlplatform seed"):
        reference_file(tmp_path, "planes")
