from pathlib import Path

import pytest

from mlplatform.settings import Paths, month_range, next_month, parse_month_spec


def test_month_range_crosses_years():
    assert month_range("2012-11", "2013-02") == ["2012-11", "2012-12", "2013-01", "2013-02"]


def test_parse_month_spec_single_and_range():
    assert parse_month_spec("2013-03") == ["2013-03"]
    assert parse_month_spec("2013-01..2013-06") == [f"2013-0{m}" for m in range(1, 7)]


@pytest.mark.parametrize("spec", ["2013-13", "2013", "march", "2013-05..2013-01"])
def test_bad_month_specs_are_refused(spec):
    with pytest.raises(ValueError, match="month"):
        parse_month_spec(spec)


def test_next_month_rolls_over_the_year():
    assert next_month("2013-12") == "2014-01"
    assert next_month("2013-01") == "2013-02"


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path))
    paths = Paths.from_env()
    assert paths.landing_dir == tmp_path / "landing"
    assert paths.warehouse == tmp_path / "warehouse.duckdb"


def test_paths_default_to_data_in_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPLATFORM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Paths.from_env().data_dir == Path(tmp_path / "data").resolve()
