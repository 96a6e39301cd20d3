"""Loading landing files into the warehouse: real files, real DuckDB, one schema per dataset."""

from __future__ import annotations

import dataclasses
import re

import duckdb
import pytest
from conftest import seed_periods, write_csv

from mlplatform.data.landing import LandingFileError, period_file, reference_file
from mlplatform.data.warehouse import (
    content_hash,
    ensure_tables,
    load_raw_partition,
    load_reference,
    partition_row_count,
    replace_from_parquet,
)

RAW_FLIGHTS, RAW_WEATHER, RAW_PEOPLE = '"flights"."raw_flights"', '"flights"."raw_weather"', '"employment"."raw_people"'
ROW = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"


@pytest.fixture
def header(flights) -> str:
    return ",".join(flights.contracts["flights"].columns)


def _load(con, dataset, source, period, path):
    return load_raw_partition(con, dataset, dataset.contracts[source], period, path)


def _types(con, table: str) -> dict[str, str]:
    return dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())


def test_loads_a_real_month(con, seeded_landing, flights):
    rows = _load(con, flights, "flights", "2013-01", period_file(seeded_landing, flights, "flights", "2013-01"))
    assert rows == 27_004
    types = _types(con, RAW_FLIGHTS)
    assert types["dep_delay"] == "BIGINT" and types["time_hour"] == "TIMESTAMP"
    assert types["period"] == "VARCHAR" and types["source_file"] == "VARCHAR"
    nulls = con.execute(f"SELECT count(*) FROM {RAW_FLIGHTS} WHERE dep_time IS NULL").fetchall()[0][0]
    assert nulls == 521  # 'NA' in the file is a null, not a string
    lineage = con.execute(f"SELECT DISTINCT period, source_file FROM {RAW_FLIGHTS}").fetchall()
    assert lineage == [("2013-01", "2013-01.csv")]


def test_loads_a_real_survey_year(con, seeded_landing, employment):
    path = period_file(seeded_landing, employment, "people", "2016")
    assert _load(con, employment, "people", "2016", path) == 69_126
    types = _types(con, RAW_PEOPLE)
    assert (types["id"], types["AGEP"], types["SCHL"], types["year"]) == ("BIGINT", "DOUBLE", "VARCHAR", "BIGINT")
    years = con.execute(f"SELECT DISTINCT year, period FROM {RAW_PEOPLE}").fetchall()
    assert years == [(2016, "2016")]
    # Codes stay text as the contract says ('1', not 1.0), and no value went missing on the way.
    assert con.execute(f"SELECT count(*) FROM {RAW_PEOPLE} WHERE SCHL IS NULL OR employed IS NULL").fetchall() == [(0,)]
    assert con.execute(f"SELECT min(SCHL), max(SCHL) FROM {RAW_PEOPLE}").fetchall() == [("0", "9")]


def test_every_dataset_keeps_its_tables_in_its_own_schema(con, seeded_landing, dataset):
    period = seed_periods(dataset)[0]
    for source in dataset.sources:
        _load(con, dataset, source, period, period_file(seeded_landing, dataset, source, period))
    for table in dataset.reference:
        load_reference(con, dataset, dataset.contracts[table], reference_file(seeded_landing, dataset, table))
    tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    expected = {
        *((dataset.name, f"{kind}_{source}") for source in dataset.sources for kind in ("raw", "clean")),
        *((dataset.name, f"{source}_quarantine") for source in dataset.sources),
        *((dataset.name, table) for table in dataset.reference),
    }
    assert set(tables) == expected


def test_two_datasets_share_a_warehouse_without_touching_each_other(con, seeded_landing, flights, employment):
    _load(con, flights, "weather", "2013-02", period_file(seeded_landing, flights, "weather", "2013-02"))
    before = content_hash(con, RAW_WEATHER)
    _load(con, employment, "people", "2015", period_file(seeded_landing, employment, "people", "2015"))
    assert content_hash(con, RAW_WEATHER) == before
    assert partition_row_count(con, RAW_PEOPLE, "2015") == 68_785


def test_reloading_a_period_replaces_it(con, seeded_landing, flights):
    path = period_file(seeded_landing, flights, "weather", "2013-02")
    _load(con, flights, "weather", "2013-02", path)
    first = content_hash(con, RAW_WEATHER, "2013-02")
    assert _load(con, flights, "weather", "2013-02", path) == 2_010
    assert content_hash(con, RAW_WEATHER, "2013-02") == first


def test_other_periods_are_untouched_by_a_reload(con, seeded_landing, flights, employment):
    for month in ("2013-01", "2013-02", "2013-02"):
        _load(con, flights, "weather", month, period_file(seeded_landing, flights, "weather", month))
    assert partition_row_count(con, RAW_WEATHER, "2013-01") == 2_226
    for year in ("2015", "2016", "2016"):
        _load(con, employment, "people", year, period_file(seeded_landing, employment, "people", year))
    assert partition_row_count(con, RAW_PEOPLE, "2015") == 68_785
    assert partition_row_count(con, RAW_PEOPLE, "2016") == 69_126


def test_the_loaded_rows_are_the_files_rows(con, seeded_landing, employment):
    path = period_file(seeded_landing, employment, "people", "2017")
    _load(con, employment, "people", "2017", path)
    columns = ", ".join(f'"{c}"' for c in employment.contracts["people"].columns)
    differing = con.execute(
        f"SELECT count(*) FROM ((SELECT {columns} FROM {RAW_PEOPLE} EXCEPT ALL "
        f"SELECT {columns} FROM read_csv('{path}', types = {{'SCHL': 'VARCHAR', 'MAR': 'VARCHAR', 'RELP': 'VARCHAR', "
        "'DIS': 'VARCHAR', 'ESP': 'VARCHAR', 'CIT': 'VARCHAR', 'MIG': 'VARCHAR', 'MIL': 'VARCHAR', 'ANC': 'VARCHAR', "
        "'NATIVITY': 'VARCHAR', 'DEAR': 'VARCHAR', 'DEYE': 'VARCHAR', 'DREM': 'VARCHAR', 'SEX': 'VARCHAR', "
        "'RAC1P': 'VARCHAR', 'AGEP': 'DOUBLE'})))"
    ).fetchall()[0][0]
    assert differing == 0


def test_timestamps_with_an_offset_are_stored_in_utc(con, tmp_path, flights, header):
    path = write_csv(
        tmp_path / "2013-01.csv", header, [ROW.replace("2013-01-01T10:00:00Z", "2013-01-01T05:00:00-05:00")]
    )
    _load(con, flights, "flights", "2013-01", path)
    assert str(con.execute(f"SELECT time_hour FROM {RAW_FLIGHTS}").fetchall()[0][0]) == "2013-01-01 10:00:00"


def test_parquet_landing_files_load_like_csv(con, seeded_landing, tmp_path, flights):
    csv_path = period_file(seeded_landing, flights, "flights", "2013-01")
    parquet = tmp_path / "2013-01.parquet"
    con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}', nullstr='NA')) TO '{parquet}'")
    assert _load(con, flights, "flights", "2013-01", parquet) == 27_004
    # A Parquet row's source_line is its row number, a CSV record's its line (the header is line 1).
    assert con.execute(f"SELECT min(source_line), max(source_line) FROM {RAW_FLIGHTS}").fetchall() == [(1, 27_004)]
    con.execute(f"CREATE TABLE from_parquet AS SELECT * EXCLUDE (source_file, source_line) FROM {RAW_FLIGHTS}")
    _load(con, flights, "flights", "2013-01", csv_path)
    differing = con.execute(
        f"SELECT count(*) FROM ((SELECT * EXCLUDE (source_file, source_line) FROM {RAW_FLIGHTS} EXCEPT ALL "
        f"SELECT * FROM from_parquet) UNION ALL (SELECT * FROM from_parquet EXCEPT ALL "
        f"SELECT * EXCLUDE (source_file, source_line) FROM {RAW_FLIGHTS}))"
    ).fetchall()[0][0]
    assert differing == 0


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("", 1, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", 1, "not a text file"),
        (b"y\xe9ar,month\n", 1, "the header is not utf-8 text"),
        (b"\xff\xfey\x00e\x00a\x00r\x00", 1, "UTF-16 text \\(declare landing.encoding: utf-16"),
        ("year,month,day\n2013,1,1\n", 1, "wrong columns \\(missing \\['dep_time'"),
        ("{header},extra\n", 1, "unexpected \\['extra'\\]"),
        ("{header},year\n", 1, "the header names \\['year'\\] more than once"),
        ("{row}\n{row}\n", 1, "no header line \\(the first line is '2013,1,1,517"),
        ("{semicolons}\n", 1, "fields are separated by ';', not ','"),
        ("{header}\n", None, "the file holds no rows"),
    ],
    ids=[
        "empty",
        "binary",
        "not-utf8",
        "utf16",
        "missing-columns",
        "extra-column",
        "repeated",
        "no-header",
        "semicolons",
        "header-only",
    ],
)
def test_files_wrong_as_a_whole_fail_naming_file_and_problem_and_touch_nothing(
    con, seeded_landing, tmp_path, flights, header, content, line, message
):
    _load(con, flights, "flights", "2013-01", period_file(seeded_landing, flights, "flights", "2013-01"))
    before = content_hash(con, RAW_FLIGHTS, "2013-01")
    broken = tmp_path / "2013-01.csv"
    if isinstance(content, bytes):
        broken.write_bytes(content)
    else:
        broken.write_text(content.format(header=header, row=ROW, semicolons=header.replace(",", ";")))
    with pytest.raises(LandingFileError, match=message) as raised:
        _load(con, flights, "flights", "2013-01", broken)
    assert raised.value.path == broken and raised.value.line == line
    assert str(raised.value).startswith(str(broken)) and "\n" not in str(raised.value)
    assert content_hash(con, RAW_FLIGHTS, "2013-01") == before


def test_an_empty_period_loads_where_the_dataset_allows_it(con, tmp_path, flights, header):
    landing = flights.declaration.landing.model_copy(update={"empty_periods": "allowed"})
    allowing = dataclasses.replace(flights, declaration=flights.declaration.model_copy(update={"landing": landing}))
    path = write_csv(tmp_path / "2013-01.csv", header, [])
    assert _load(con, allowing, "flights", "2013-01", path) == 0


def test_records_that_cannot_be_read_whole_are_kept_with_their_line_and_failures(con, tmp_path, flights, header):
    """Columns in another order, a BOM and CRLF line ends are read as they are; a bad cell, NaN, an infinity and a
    line with too few or too many fields each cost their own row, kept with the line and what broke."""
    columns = flights.contracts["flights"].columns
    values = dict(zip(columns, ROW.split(","), strict=True))
    order = list(reversed(columns))

    def line(**changes) -> str:
        return ",".join({**values, **changes}[name] for name in order)

    lines = [
        ", ".join(f'"{name}"' for name in order),  # quoted names, a space after each comma
        line(),
        line(dep_time="early", flight="2"),
        line(distance="inf", flight="3"),
        ",".join(order[:5]),
        line(flight="5") + ",surplus",
        line(time_hour="2013-01-32T10:00:00Z", flight="6"),
        line(flight="7"),
    ]
    path = tmp_path / "2013-01.csv"
    path.write_bytes("\ufeff".encode() + "\r\n".join(lines).encode() + b"\r\n")
    assert _load(con, flights, "flights", "2013-01", path) == 7
    rows = con.execute(
        f"SELECT source_line, flight, dep_time, load_failures FROM {RAW_FLIGHTS} ORDER BY source_line"
    ).fetchall()
    assert rows == [
        (2, 1545, 517, None),
        (3, 2, None, [{"column_name": "dep_time", "check_name": "type(BIGINT)", "raw_value": "early"}]),
        (4, 3, 517, [{"column_name": "distance", "check_name": "type(BIGINT)", "raw_value": "inf"}]),
        (
            5,
            None,
            None,
            [{"column_name": "flights", "check_name": "field_count(19)", "raw_value": ",".join(order[:5])}],
        ),
        (6, None, None, [{"column_name": "flights", "check_name": "field_count(19)", "raw_value": lines[5]}]),
        (
            7,
            6,
            517,
            [{"column_name": "time_hour", "check_name": "type(TIMESTAMP)", "raw_value": "2013-01-32T10:00:00Z"}],
        ),
        (8, 7, 517, None),
    ]
    # The good rows hold the file's values, whatever the order of its columns.
    good = con.execute(f"SELECT * EXCLUDE (source_line, load_failures) FROM {RAW_FLIGHTS} WHERE flight = 7").fetchall()
    assert [str(value) for value in good[0][:18]] == [
        values[name] if name != "flight" else "7" for name in columns[:18]
    ]


def test_nan_and_infinities_where_the_contract_wants_finite_numbers(con, tmp_path, flights):
    contract = flights.contracts["weather"]
    good = "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.35702,NA,0,1012,10,2013-01-01T06:00:00Z"
    rows = [
        good.replace(",39.02,", f",{value},").replace("T06", f"T{hour:02d}")
        for hour, value in ((7, "NaN"), (8, "inf"), (9, "-Infinity"))
    ]
    path = write_csv(tmp_path / "2013-01.csv", ",".join(contract.columns), [good, *rows])
    _load(con, flights, "weather", "2013-01", path)
    failures = con.execute(
        f"SELECT source_line, temp, load_failures FROM {RAW_WEATHER} ORDER BY source_line"
    ).fetchall()
    assert failures[0] == (2, 39.02, None)
    assert [(line, failed[0]["check_name"], failed[0]["raw_value"]) for line, _, failed in failures[1:]] == [
        (3, "finite", "NaN"),
        (4, "finite", "inf"),
        (5, "finite", "-Infinity"),
    ]


def test_a_bad_value_in_a_yearly_file_is_kept_with_its_line(con, tmp_path, employment):
    header = ",".join(employment.contracts["people"].columns)
    good = "1,48.0,21,1,0,2,0,1,1,4,2,1,2,2,2,2,1,2016,1"
    path = write_csv(
        tmp_path / "2016.csv", header, [good, good.replace("1,48.0", "2,48.0").replace(",2016,", ",twenty16,")]
    )
    assert _load(con, employment, "people", "2016", path) == 2
    failures = con.execute(f"SELECT source_line, id, year, load_failures FROM {RAW_PEOPLE} ORDER BY id").fetchall()
    assert failures == [
        (2, 1, 2016, None),
        (3, 2, None, [{"column_name": "year", "check_name": "type(BIGINT)", "raw_value": "twenty16"}]),
    ]


def test_parquet_with_wrong_columns_is_refused(con, tmp_path, flights):
    parquet = tmp_path / "2013-01.parquet"
    con.execute(f"COPY (SELECT 1 AS year, 2 AS colour) TO '{parquet}'")
    with pytest.raises(LandingFileError, match="unexpected \\['colour'\\]"):
        _load(con, flights, "flights", "2013-01", parquet)


def test_a_file_that_is_not_parquet_is_refused(con, tmp_path, flights):
    fake = tmp_path / "2013-01.parquet"
    fake.write_text("year,month\n")
    with pytest.raises(LandingFileError, match="not a readable Parquet file"):
        _load(con, flights, "flights", "2013-01", fake)


def test_load_reference_replaces_the_table(con, seeded_landing, flights):
    path = reference_file(seeded_landing, flights, "planes")
    assert load_reference(con, flights, flights.contracts["planes"], path) == 3_322
    assert load_reference(con, flights, flights.contracts["planes"], path) == 3_322
    assert con.execute('SELECT count(*) FROM "flights"."planes"').fetchall() == [(3_322,)]
    assert _types(con, '"flights"."planes"')["year"] == "BIGINT"


def test_load_reference_names_a_bad_line(con, tmp_path, flights):
    contract = flights.contracts["planes"]
    path = write_csv(tmp_path / "planes.csv", ",".join(contract.columns), ["N1,old,a,b,c,2,100,NA,x"])
    with pytest.raises(LandingFileError, match="line 2"):
        load_reference(con, flights, contract, path)
    with pytest.raises(duckdb.CatalogException):
        con.execute('SELECT * FROM "flights"."planes"')


def test_content_hash_is_order_independent_and_sees_every_change(con, seeded_landing, flights):
    _load(con, flights, "weather", "2013-01", period_file(seeded_landing, flights, "weather", "2013-01"))
    whole = content_hash(con, RAW_WEATHER, "2013-01")
    assert whole.startswith("2226-")
    con.execute(f"CREATE TABLE shuffled AS SELECT * FROM {RAW_WEATHER} ORDER BY random()")
    assert content_hash(con, "shuffled", "2013-01") == whole == content_hash(con, RAW_WEATHER)
    con.execute("UPDATE shuffled SET temp = temp + 0.01 WHERE rowid = 7")
    assert content_hash(con, "shuffled", "2013-01") != whole
    assert content_hash(con, RAW_WEATHER, "2099-01") == f"0-{0:032x}"


def test_replace_from_parquet_restores_one_period(con, seeded_landing, tmp_path, employment):
    for year in ("2015", "2016"):
        _load(con, employment, "people", year, period_file(seeded_landing, employment, "people", year))
    exported = tmp_path / "2016.parquet"
    con.execute(f"COPY (SELECT * FROM {RAW_PEOPLE} WHERE period = '2016') TO '{exported}'")
    before, other = content_hash(con, RAW_PEOPLE, "2016"), content_hash(con, RAW_PEOPLE, "2015")
    con.execute(f"DELETE FROM {RAW_PEOPLE} WHERE period = '2016' AND id % 2 = 0")
    assert replace_from_parquet(con, RAW_PEOPLE, "2016", exported) == 69_126
    assert content_hash(con, RAW_PEOPLE, "2016") == before
    assert content_hash(con, RAW_PEOPLE, "2015") == other


def test_ensure_tables_is_idempotent(con, flights):
    for _ in range(2):
        ensure_tables(con, flights, flights.contracts["weather"])
    types = _types(con, '"flights"."weather_quarantine"')
    assert types["failed_checks"] == "VARCHAR" and types["time_hour"] == "TIMESTAMP"
    assert types["source_line"] == "BIGINT" and types["failures"].endswith("[]")
    assert list(_types(con, RAW_WEATHER))[-2:] == ["source_line", "load_failures"]
    assert partition_row_count(con, RAW_WEATHER, "2013-01") == 0


def test_tables_of_an_earlier_version_get_the_new_columns(con, seeded_landing, flights):
    """A warehouse written before lines and load failures were kept: its tables gain them at the end, where a new
    table has them, and the next load fills them."""
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in flights.contracts["weather"].sql_types.items())
    con.execute("CREATE SCHEMA flights")
    con.execute(f"CREATE TABLE {RAW_WEATHER} ({columns}, period VARCHAR NOT NULL, source_file VARCHAR NOT NULL)")
    con.execute(
        f'CREATE TABLE "flights"."weather_quarantine" ({columns}, period VARCHAR NOT NULL, '
        "source_file VARCHAR NOT NULL, failed_checks VARCHAR NOT NULL)"
    )
    _load(con, flights, "weather", "2013-01", period_file(seeded_landing, flights, "weather", "2013-01"))
    assert list(_types(con, RAW_WEATHER))[-4:] == ["period", "source_file", "source_line", "load_failures"]
    quarantine = list(_types(con, '"flights"."weather_quarantine"'))[-3:]
    assert quarantine == ["failed_checks", "source_line", "failures"]
    assert con.execute(f"SELECT min(source_line), max(source_line) FROM {RAW_WEATHER}").fetchall() == [(2, 2_227)]


@pytest.mark.parametrize(
    ("rows", "line", "problem"),
    [
        (["N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan", "N2,2004,Fixed wing"], 3, "planes:field_count(9)"),
        (["N1,2004,Fixed wing,EMBRAER,E145,2,55,NA,Turbo-fan,extra"], 2, "planes:field_count(9)"),
        (["N1,2004,Fixed wing,EMBRAER,E145,2,55,inf,Turbo-fan"], 2, "speed:type(BIGINT) fails on 'inf'"),
        ([], None, "the file holds no rows"),
    ],
)
def test_a_reference_file_is_loaded_whole_or_not_at_all(con, seeded_landing, tmp_path, flights, rows, line, problem):
    contract = flights.contracts["planes"]
    load_reference(con, flights, contract, reference_file(seeded_landing, flights, "planes"))
    path = write_csv(tmp_path / "planes.csv", ",".join(contract.columns), rows)
    with pytest.raises(LandingFileError, match=re.escape(problem)) as raised:
        load_reference(con, flights, contract, path)
    assert raised.value.line == line
    assert con.execute('SELECT count(*) FROM "flights"."planes"').fetchall() == [(3_322,)]


def test_a_file_that_cannot_be_opened_is_named(con, tmp_path, flights):
    folder = tmp_path / "2013-01.csv"
    folder.mkdir()
    with pytest.raises(LandingFileError, match="cannot be read \\(Is a directory\\)") as raised:
        _load(con, flights, "flights", "2013-01", folder)
    assert raised.value.path == folder
