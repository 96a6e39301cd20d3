import duckdb
import pytest
from conftest import write_csv

from mlplatform.contracts import FLIGHTS, PLANES, WEATHER
from mlplatform.landing import LandingFileError
from mlplatform.warehouse import content_hash, load_raw_partition, load_reference, partition_row_count

HEADER = ",".join(FLIGHTS.columns)
ROW = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"


def test_loads_a_real_month(con, seeded_landing):
    rows = load_raw_partition(con, FLIGHTS, "2013-01", seeded_landing / "flights" / "2013-01.csv")
    assert rows == 27_004
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE raw_flights)").fetchall())
    assert types["dep_delay"] == "BIGINT" and types["time_hour"] == "TIMESTAMP"
    nulls = con.execute("SELECT count(*) FROM raw_flights WHERE dep_time IS NULL").fetchall()[0][0]
    assert nulls == 521  # 'NA' in the file is a null, not a string


def test_reloading_a_month_replaces_it(con, seeded_landing):
    path = seeded_landing / "weather" / "2013-02.csv"
    load_raw_partition(con, WEATHER, "2013-02", path)
    first = content_hash(con, "raw_weather", "2013-02")
    assert load_raw_partition(con, WEATHER, "2013-02", path) == 2_010
    assert content_hash(con, "raw_weather", "2013-02") == first


def test_other_months_are_untouched_by_a_reload(con, seeded_landing):
    load_raw_partition(con, WEATHER, "2013-01", seeded_landing / "weather" / "2013-01.csv")
    load_raw_partition(con, WEATHER, "2013-02", seeded_landing / "weather" / "2013-02.csv")
    load_raw_partition(con, WEATHER, "2013-02", seeded_landing / "weather" / "2013-02.csv")
    assert partition_row_count(con, "raw_weather", "2013-01") == 2_226


def test_timestamps_with_an_offset_are_stored_in_utc(con, tmp_path):
    path = write_csv(
        tmp_path / "2013-01.csv", HEADER, [ROW.replace("2013-01-01T10:00:00Z", "2013-01-01T05:00:00-05:00")]
    )
    load_raw_partition(con, FLIGHTS, "2013-01", path)
    assert str(con.execute("SELECT time_hour FROM raw_flights").fetchall()[0][0]) == "2013-01-01 10:00:00"


def test_parquet_landing_files_load_like_csv(con, seeded_landing, tmp_path):
    parquet = tmp_path / "2013-01.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_csv('{seeded_landing / 'flights' / '2013-01.csv'}', nullstr='NA')) TO '{parquet}'"
    )
    assert load_raw_partition(con, FLIGHTS, "2013-01", parquet) == 27_004
    con.execute("CREATE TABLE from_parquet AS SELECT * EXCLUDE (source_file) FROM raw_flights")
    load_raw_partition(con, FLIGHTS, "2013-01", seeded_landing / "flights" / "2013-01.csv")
    differing = con.execute(
        "SELECT count(*) FROM ((SELECT * EXCLUDE (source_file) FROM raw_flights EXCEPT ALL SELECT * FROM from_parquet) "
        "UNION ALL (SELECT * FROM from_parquet EXCEPT ALL SELECT * EXCLUDE (source_file) FROM raw_flights))"
    ).fetchall()[0][0]
    assert differing == 0


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"", 1, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", 1, "not a UTF-8 CSV file"),
        (b"year,month,day\n2013,1,1\n", 1, "wrong columns \\(missing \\['dep_time'"),
        ((HEADER + ",extra\n").encode(), 1, "unexpected \\['extra'\\]"),
        ((",".join(reversed(FLIGHTS.columns)) + "\n").encode(), 1, "columns out of order"),
        (f"{HEADER}\n{ROW}\n{ROW.replace(',517,', ',early,')}\n".encode(), 3, 'converting column "dep_time"'),
        (f"{HEADER}\n{ROW},surplus\n".encode(), 2, "Expected Number of Columns"),
    ],
    ids=["empty", "binary", "missing-columns", "extra-column", "reordered", "bad-value", "ragged-row"],
)
def test_unparseable_files_fail_naming_file_and_line_and_touch_nothing(
    con, seeded_landing, tmp_path, content, line, message
):
    load_raw_partition(con, FLIGHTS, "2013-01", seeded_landing / "flights" / "2013-01.csv")
    before = content_hash(con, "raw_flights", "2013-01")
    broken = tmp_path / "2013-01.csv"
    broken.write_bytes(content)
    with pytest.raises(LandingFileError, match=message) as raised:
        load_raw_partition(con, FLIGHTS, "2013-01", broken)
    assert raised.value.path == broken and raised.value.line == line
    assert str(broken) in str(raised.value) and f"line {line}" in str(raised.value)
    assert content_hash(con, "raw_flights", "2013-01") == before


def test_parquet_with_wrong_columns_is_refused(con, tmp_path):
    parquet = tmp_path / "2013-01.parquet"
    con.execute(f"COPY (SELECT 1 AS year, 2 AS colour) TO '{parquet}'")
    with pytest.raises(LandingFileError, match="unexpected \\['colour'\\]"):
        load_raw_partition(con, FLIGHTS, "2013-01", parquet)


def test_a_file_that_is_not_parquet_is_refused(con, tmp_path):
    fake = tmp_path / "2013-01.parquet"
    fake.write_text("year,month\n")
    with pytest.raises(LandingFileError, match="not a readable Parquet file"):
        load_raw_partition(con, FLIGHTS, "2013-01", fake)


def test_load_reference_replaces_the_table(con, seeded_landing):
    path = seeded_landing / "reference" / "planes.csv"
    assert load_reference(con, PLANES, path) == 3_322
    assert load_reference(con, PLANES, path) == 3_322


def test_load_reference_names_a_bad_line(con, tmp_path):
    path = write_csv(tmp_path / "planes.csv", ",".join(PLANES.columns), ["N1,old,a,b,c,2,100,NA,x"])
    with pytest.raises(LandingFileError, match="line 2"):
        load_reference(con, PLANES, path)
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM planes")
