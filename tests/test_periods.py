"""Periods: keys, arithmetic and ranges for daily, monthly and yearly datasets; and where the platform keeps
its state (settings.Paths)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from mlplatform.data.sql import sql_string
from mlplatform.datasets import get_dataset, load_dataset
from mlplatform.datasets.dataset import CONTRACT_FILE, in_period_sql, period_sql
from mlplatform.datasets.periods import CRON, PeriodError, Periods
from mlplatform.settings import Paths

DAILY = Periods("daily", "2013-01-30")
MONTHLY = Periods("monthly", "2013-01")
YEARLY = Periods("yearly", "2015")


@pytest.mark.parametrize(
    ("periods", "key", "first_day"),
    [
        (DAILY, "2013-02-28", dt.date(2013, 2, 28)),
        (DAILY, "2012-02-29", dt.date(2012, 2, 29)),
        (MONTHLY, "2013-07", dt.date(2013, 7, 1)),
        (MONTHLY, "1999-12", dt.date(1999, 12, 1)),
        (YEARLY, "2016", dt.date(2016, 1, 1)),
    ],
)
def test_parse_gives_the_first_day_and_key_spells_it_back(periods, key, first_day):
    assert periods.parse(key) == first_day
    assert periods.key(first_day) == key
    assert periods.from_index(periods.index(key)) == key


@pytest.mark.parametrize(
    ("periods", "key"),
    [
        (DAILY, "2013-02-29"),  # not a leap year
        (DAILY, "2013-2-1"),
        (DAILY, "2013-02"),
        (DAILY, "20130201"),
        (MONTHLY, "2013-13"),
        (MONTHLY, "2013-00"),
        (MONTHLY, "2013-1"),  # strptime takes it; a key has one spelling
        (MONTHLY, "2013"),
        (MONTHLY, "2013-01-01"),
        (MONTHLY, "march"),
        (MONTHLY, ""),
        (YEARLY, "2013-01"),
        (YEARLY, "16"),
        (YEARLY, "two thousand"),
    ],
)
def test_bad_keys_are_refused_naming_the_expected_form(periods, key):
    with pytest.raises(PeriodError, match=f"expected a {periods.grain} period like") as raised:
        periods.parse(key)
    assert repr(key) in str(raised.value)


def test_a_bad_grain_or_start_is_refused():
    with pytest.raises(PeriodError, match="grain must be one of"):
        Periods("weekly", "2013-01")
    with pytest.raises(PeriodError, match="monthly period like 2013-01"):
        Periods("monthly", "2013")
    assert PeriodError.__mro__[1] is ValueError


@pytest.mark.parametrize(
    ("periods", "key", "count", "expected"),
    [
        (DAILY, "2013-02-28", 1, "2013-03-01"),
        (DAILY, "2012-02-28", 1, "2012-02-29"),
        (DAILY, "2013-01-01", -1, "2012-12-31"),
        (DAILY, "2013-01-01", 365, "2014-01-01"),
        (MONTHLY, "2013-12", 1, "2014-01"),
        (MONTHLY, "2013-01", 1, "2013-02"),
        (MONTHLY, "2013-03", -12, "2012-03"),
        (MONTHLY, "2013-01", -1, "2012-12"),
        (MONTHLY, "2013-05", 0, "2013-05"),
        (YEARLY, "2016", 1, "2017"),
        (YEARLY, "2016", -3, "2013"),
    ],
)
def test_shift_crosses_month_and_year_ends(periods, key, count, expected):
    assert periods.shift(key, count) == expected
    assert periods.index(expected) - periods.index(key) == count


def test_between_is_inclusive_and_crosses_years():
    assert MONTHLY.between("2012-11", "2013-02") == ["2012-11", "2012-12", "2013-01", "2013-02"]
    assert MONTHLY.between("2013-04", "2013-04") == ["2013-04"]
    assert DAILY.between("2012-12-30", "2013-01-02") == ["2012-12-30", "2012-12-31", "2013-01-01", "2013-01-02"]
    assert DAILY.between("2012-02-28", "2012-03-01") == ["2012-02-28", "2012-02-29", "2012-03-01"]
    assert YEARLY.between("2015", "2018") == ["2015", "2016", "2017", "2018"]
    with pytest.raises(PeriodError, match=r"empty period range: 2013-05\.\.2013-01"):
        MONTHLY.between("2013-05", "2013-01")


def test_ranges_are_the_fewest_runs_of_consecutive_periods_in_order():
    months = ["2013-03", "2012-12", "2013-01", "2013-05", "2013-01", "2013-06"]
    assert MONTHLY.ranges(months) == [("2012-12", "2013-01"), ("2013-03", "2013-03"), ("2013-05", "2013-06")]
    assert DAILY.ranges(["2012-02-29", "2012-02-28", "2012-03-01"]) == [("2012-02-28", "2012-03-01")]
    assert YEARLY.ranges(["2018", "2015", "2016"]) == [("2015", "2016"), ("2018", "2018")]
    assert MONTHLY.ranges([]) == []


def test_before_lists_the_periods_right_before_oldest_first():
    assert MONTHLY.before("2013-03", 3) == ["2012-12", "2013-01", "2013-02"]
    assert MONTHLY.before("2013-03", 12)[0] == "2012-03"
    assert MONTHLY.before("2013-03", 0) == []
    assert YEARLY.before("2016", 1) == ["2015"]
    assert DAILY.before("2013-03-01", 2) == ["2013-02-27", "2013-02-28"]


@pytest.mark.parametrize(
    ("periods", "spec", "expected"),
    [
        (MONTHLY, "2013-03", ["2013-03"]),
        (MONTHLY, "2013-01..2013-06", [f"2013-0{m}" for m in range(1, 7)]),
        (MONTHLY, "2013-11..2014-02", ["2013-11", "2013-12", "2014-01", "2014-02"]),
        (YEARLY, "2016", ["2016"]),
        (YEARLY, "2015..2018", ["2015", "2016", "2017", "2018"]),
        (DAILY, "2013-01-31..2013-02-02", ["2013-01-31", "2013-02-01", "2013-02-02"]),
        (DAILY, "2013-07-04", ["2013-07-04"]),
    ],
)
def test_parse_spec_single_and_range(periods, spec, expected):
    assert periods.parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("periods", "spec"),
    [
        (MONTHLY, "2013-13"),
        (MONTHLY, "2013"),
        (MONTHLY, "march"),
        (MONTHLY, "2013-05..2013-01"),
        (MONTHLY, "2013-01..2013-1"),
        (MONTHLY, "2013-01.."),
        (YEARLY, "2013-01..2013-02"),
        (YEARLY, "2018..2015"),
        (DAILY, "2013-02-30"),
        (DAILY, "2013-01"),
    ],
)
def test_bad_specs_are_refused(periods, spec):
    with pytest.raises(PeriodError, match="period"):
        periods.parse_spec(spec)


@pytest.mark.parametrize(
    ("periods", "today", "open_keys", "closed_keys"),
    [
        # open: the first period, any later one up to the current one (included); closed: before the first, future
        (MONTHLY, dt.date(2014, 3, 15), ["2013-01", "2013-12", "2014-03"], ["2012-12", "2014-04", "2099-01"]),
        (MONTHLY, dt.date(2013, 1, 1), ["2013-01"], ["2013-02", "2012-01"]),
        (YEARLY, dt.date(2017, 12, 31), ["2015", "2016", "2017"], ["2014", "2018"]),
        (YEARLY, dt.date(2015, 1, 1), ["2015"], ["2016", "2014"]),
        (DAILY, dt.date(2013, 2, 1), ["2013-01-30", "2013-01-31", "2013-02-01"], ["2013-01-29", "2013-02-02"]),
    ],
)
def test_is_open_from_the_first_period_to_today(periods, today, open_keys, closed_keys):
    assert all(periods.is_open(key, today) for key in open_keys)
    assert not any(periods.is_open(key, today) for key in closed_keys)


def test_is_open_defaults_to_today():
    this_month = MONTHLY.key(dt.date.today())
    assert MONTHLY.is_open(this_month)
    assert not MONTHLY.is_open(MONTHLY.shift(this_month, 1))
    assert YEARLY.is_open(YEARLY.key(dt.date.today()))


def test_end_is_the_first_day_after_the_period():
    assert MONTHLY.end("2013-12") == dt.date(2014, 1, 1)
    assert MONTHLY.end("2012-02") == dt.date(2012, 3, 1)
    assert YEARLY.end("2016") == dt.date(2017, 1, 1)
    assert DAILY.end("2012-02-29") == dt.date(2012, 3, 1)


def test_format_and_schedule_per_grain():
    assert (DAILY.fmt, MONTHLY.fmt, YEARLY.fmt) == ("%Y-%m-%d", "%Y-%m", "%Y")
    assert (DAILY.cron, MONTHLY.cron, YEARLY.cron) == (CRON["daily"], CRON["monthly"], CRON["yearly"])
    assert MONTHLY.cron == "0 0 1 * *" and YEARLY.cron == "0 0 1 1 *"


# settings.Paths (what test_settings.py covered besides the old month helpers, which Periods replaced)


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path))
    paths = Paths.from_env()
    assert paths.landing_dir == tmp_path / "landing"
    assert paths.warehouse == tmp_path / "warehouse.duckdb"
    assert paths.versions_dir == tmp_path / "versions"
    assert paths.dvc_root == tmp_path.parent


def test_paths_default_to_data_in_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPLATFORM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Paths.from_env().data_dir == Path(tmp_path / "data").resolve()


@pytest.mark.parametrize("key", [f"2013-{month:02d}" for month in range(1, 13)])
def test_in_period_range_agrees_with_cutting_each_timestamp_in_its_zone(key):
    """Validation checks a row's period with a range on the stored UTC value; it must tell exactly what cutting
    the value in the source's zone (New York: DST starts 2013-03-10, ends 2013-11-03) tells, to the minute."""
    flights = get_dataset("flights")
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE t AS SELECT unnest(range(TIMESTAMP '2012-12-31', TIMESTAMP '2014-01-02', "
            "INTERVAL 1 MINUTE)) AS time_hour UNION ALL SELECT NULL"
        )
        cut = f"{period_sql(flights, 'flights', 'time_hour')} = {sql_string(key)}"
        ranged = in_period_sql(flights, "flights", "time_hour", key)
        inside, disagree = con.execute(
            f"SELECT count(*) FILTER ({cut}), count(*) FILTER (({cut}) IS DISTINCT FROM ({ranged})) FROM t"
        ).fetchall()[0]
    days = (MONTHLY.end(key) - MONTHLY.parse(key)).days
    assert inside == days * 24 * 60 + {"2013-03": -60, "2013-11": 60}.get(key, 0)
    assert disagree == 0


def test_in_period_of_a_year_column_compares_the_year():
    employment = get_dataset("employment")
    source = next(iter(employment.declaration.landing.sources))
    column = employment.declaration.landing.sources[source].time_column
    with duckdb.connect() as con:
        years = con.execute(
            f"SELECT list({column} ORDER BY {column}) FROM (SELECT unnest([2015, 2016, NULL]) AS {column}) "
            f"WHERE {in_period_sql(employment, source, column, '2016')}"
        ).fetchall()[0][0]
    assert years == [2016]


def test_in_period_of_a_date_column_agrees_with_its_period_key(tmp_path):
    folder = tmp_path / "flights"
    shutil.copytree(get_dataset("flights").folder, folder, ignore=shutil.ignore_patterns("seed"))
    contract = folder / CONTRACT_FILE
    contract.write_text(contract.read_text().replace("time_hour: {type: TIMESTAMP}", "time_hour: {type: DATE}", 1))
    dated = load_dataset(folder)
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE t AS SELECT unnest(range(DATE '2012-12-25', DATE '2014-01-08', INTERVAL 1 DAY))::DATE "
            "AS time_hour UNION ALL SELECT NULL"
        )
        for key in ("2013-02", "2013-12"):
            cut = f"{period_sql(dated, 'flights', 'time_hour')} = {sql_string(key)}"
            ranged = in_period_sql(dated, "flights", "time_hour", key)
            inside, disagree = con.execute(
                f"SELECT count(*) FILTER ({ranged}), count(*) FILTER (({cut}) IS DISTINCT FROM ({ranged})) FROM t"
            ).fetchall()[0]
            assert (inside, disagree) == ({"2013-02": 28, "2013-12": 31}[key], 0)
