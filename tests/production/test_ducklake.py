"""The warehouse on DuckLake, for real: catalog in a throwaway PostgreSQL, data files on moto's S3 server.

- The platform's data path (load raw, validate, features; two flights months) gives the same content hashes on
  DuckLake as on an embedded DuckDB file, and the registry works there unchanged.
- Two processes replacing periods of one table at the same moment: DuckLake makes the later COMMIT fail with a
  transaction conflict; ``retry_on_conflict`` runs that whole transaction again, and both end committed, nothing
  lost and nothing doubled. Without the retry the conflict is there to see, and it is not a LandingFileError.
- The production profile's resource reaches the lake from the environment variables alone.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mlplatform.data import features, lake, landing, validation, warehouse
from mlplatform.datasets import Dataset, get_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.ml import registry
from mlplatform.ml.registry import ModelVersion, RegistryError

PERIODS = ["2013-01", "2013-02"]
WRITER = Path(__file__).with_name("lake_writer.py")


@pytest.fixture(scope="module")
def flights() -> Dataset:
    return get_dataset("flights")


@pytest.fixture(scope="module")
def two_months(flights: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flights' landing zone for two months and the reference tables."""
    folder = tmp_path_factory.mktemp("landing")
    landing.seed(folder, flights, PERIODS)
    return folder


@pytest.fixture
def lake_con(lake_settings: lake.LakeSettings):
    con = lake.connect(lake=lake_settings)
    yield con
    con.close()


def run_data_path(con: duckdb.DuckDBPyConnection, dataset: Dataset, folder: Path) -> dict[str, str]:
    """What the period pipeline does, through the data modules: every table's content hash afterwards."""
    hashes = {}
    for name in dataset.reference:
        warehouse.load_reference(con, dataset, dataset.contracts[name], landing.reference_file(folder, dataset, name))
        hashes[name] = warehouse.content_hash(con, dataset.table(name))
    params, lookback = dict(dataset.declaration.features.params), dataset.declaration.features.lookback_periods
    for period in PERIODS:
        for source in dataset.sources:
            contract = dataset.contracts[source]
            warehouse.load_raw_partition(
                con, dataset, contract, period, landing.period_file(folder, dataset, source, period)
            )
            validation.split_partition(con, dataset, contract, period)
        features.build_features(con, dataset, period, params, lookback)
    for period in PERIODS:
        tables = [FEATURES_TABLE] + [f(s) for s in dataset.sources for f in (raw_table, clean_table, quarantine_table)]
        for table in tables:
            hashes[f"{table}/{period}"] = warehouse.content_hash(con, dataset.table(table), period)
    return hashes


def test_the_data_path_on_ducklake_gives_the_embedded_files_hashes(lake_con, flights, two_months, tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as embedded:
        expected = run_data_path(embedded, flights, two_months)
    assert all(not h.startswith("0-") for table, h in expected.items() if "quarantine" not in table)  # real rows
    assert run_data_path(lake_con, flights, two_months) == expected
    assert lake_con.execute("SELECT current_database()").fetchone()[0] == lake.LAKE_ALIAS
    # The rows are DuckLake's: Parquet files in the bucket, listed in the PostgreSQL catalog.
    files = lake_con.execute(
        "SELECT data_file FROM ducklake_list_files(?, 'raw_flights', schema => 'flights')", [lake.LAKE_ALIAS]
    ).fetchall()
    assert files and all(path.startswith("s3://") and path.endswith(".parquet") for (path,) in files)
    # Re-running a period replaces it: same hash, no doubled rows.
    before = warehouse.content_hash(lake_con, flights.table("raw_flights"), PERIODS[0])
    file = landing.period_file(two_months, flights, "flights", PERIODS[0])
    warehouse.load_raw_partition(lake_con, flights, flights.contracts["flights"], PERIODS[0], file)
    assert warehouse.content_hash(lake_con, flights.table("raw_flights"), PERIODS[0]) == before


def test_a_malformed_month_is_quarantined_on_ducklake_as_in_the_embedded_file(lake_con, flights, two_months, tmp_path):
    """The rows that cannot be read, the lines DuckDB rejects (added back, the other lines moved past them) and the
    quarantine's failures are the same on DuckLake."""
    lines = landing.period_file(two_months, flights, "flights", PERIODS[0]).read_text().splitlines()
    lines[3] = lines[3].replace("2013,", "twenty13,", 1)
    lines[10] += ",surplus"
    lines[-1] = lines[-1][:20]
    broken = tmp_path / "malformed" / f"{PERIODS[0]}.csv"
    broken.parent.mkdir()
    broken.write_text("\r\n".join(lines))
    contract = flights.contracts["flights"]

    def quarantine(con) -> tuple:
        for name in flights.reference:
            reference = landing.reference_file(two_months, flights, name)
            warehouse.load_reference(con, flights, flights.contracts[name], reference)
        warehouse.load_raw_partition(con, flights, contract, PERIODS[0], broken)
        counts = validation.split_partition(con, flights, contract, PERIODS[0])
        tables = [f(contract.name) for f in (raw_table, clean_table, quarantine_table)]
        lines = con.execute(f"SELECT source_line FROM {flights.table(tables[2])} ORDER BY 1").fetchall()
        return counts, lines, [warehouse.content_hash(con, flights.table(t), PERIODS[0]) for t in tables]

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as embedded:
        expected = quarantine(embedded)
    assert expected[0].quarantined == 3 and expected[1] == [(4,), (11,), (len(lines),)]
    assert quarantine(lake_con) == expected


def version(name: str, roc_auc: float = 0.7, passed: bool = True) -> ModelVersion:
    return ModelVersion("flights_delay", name, "2013-07", "2013-01..2013-06", f"data-{name}", {"roc_auc": roc_auc},
                        passed, "why")  # fmt: skip


def test_the_registry_works_on_ducklake(lake_con):
    registry.register(lake_con, version("a.dir", roc_auc=0.7))
    registry.register(lake_con, version("a.dir", roc_auc=0.71))  # an upsert: still one row, the new evaluation
    registry.register(lake_con, version("b.dir"))
    registry.register(lake_con, version("bad.dir", passed=False))
    assert {v.version: v.metrics["roc_auc"] for v in registry.versions(lake_con, "flights_delay")} == {
        "a.dir": 0.71,
        "b.dir": 0.7,
        "bad.dir": 0.7,
    }
    first = registry.promote(lake_con, "flights_delay", "a.dir", "manual", note="first")
    assert registry.promote(lake_con, "flights_delay", "b.dir", "drift").previous_version == "a.dir"
    with pytest.raises(RegistryError, match="failed its gate"):
        registry.promote(lake_con, "flights_delay", "bad.dir", "manual")
    assert registry.challenger(lake_con, "flights_delay").version in {"a.dir", "bad.dir"}
    restored = registry.rollback(lake_con, "flights_delay")
    assert (restored.version, restored.promoted_at, restored.note) == ("a.dir", first.promoted_at, "first")
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback(lake_con, "flights_delay")
    assert registry.champion(lake_con, "flights_delay").version == "a.dir"
    history = registry.promotion_history(lake_con, "flights_delay")
    assert [(row["version"], row["rolled_back_at"] is not None) for row in history] == [
        ("b.dir", True),
        ("a.dir", False),
    ]


def replace_at_once(settings: lake.LakeSettings, files: dict[str, Path], meeting: Path, *flags: str) -> list[dict]:
    """Each period replaced by its own process, all committing at the same moment (lake_writer.py)."""
    meeting.mkdir()
    command = [sys.executable, str(WRITER), json.dumps(asdict(settings))]

    def write(period: str) -> dict:
        done = subprocess.run(
            [*command, str(files[period]), period, str(meeting), str(len(files)), *flags],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(len(files)) as pool:
        return sorted(pool.map(write, files), key=lambda report: report["period"])


def rows_by_period(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, int]]:
    rows = con.execute('SELECT period, source_file, count(*) FROM "flights"."raw_flights" GROUP BY ALL').fetchall()
    assert len({period for period, *_ in rows}) == len(rows), f"a period holds two loads' rows: {rows}"
    return {period: (source, count) for period, source, count in rows}


@pytest.fixture
def loaded_lake(lake_settings, lake_con, flights, two_months, tmp_path) -> dict:
    """A lake whose raw_flights holds both months, and a second copy of each month's file under another name (so
    the rows show which load they came from)."""
    contract = flights.contracts["flights"]
    files, original = {}, {}
    for period in PERIODS:
        file = landing.period_file(two_months, flights, "flights", period)
        original[period] = (file.name, warehouse.load_raw_partition(lake_con, flights, contract, period, file))
        files[period] = shutil.copy(file, tmp_path / f"reloaded-{period}.csv")
    return {"files": {p: Path(f) for p, f in files.items()}, "original": original}


def test_writers_replacing_one_table_at_once_all_commit_thanks_to_the_retry(
    lake_settings, lake_con, loaded_lake, tmp_path
):
    reports = replace_at_once(lake_settings, loaded_lake["files"], tmp_path / "meeting")
    assert all(report["committed"] for report in reports), reports
    # One of them lost the race at COMMIT and ran its whole transaction again.
    assert sorted(report["transactions"] for report in reports) == [1, 2], reports
    expected = {period: (f"reloaded-{period}.csv", rows) for period, (_, rows) in loaded_lake["original"].items()}
    assert rows_by_period(lake_con) == expected  # every period once, with the new load's rows: none lost, none doubled


def test_without_the_retry_one_writer_fails_with_a_conflict_not_a_landing_error(
    lake_settings, lake_con, loaded_lake, tmp_path
):
    reports = replace_at_once(lake_settings, loaded_lake["files"], tmp_path / "meeting", "--no-retry")
    [winner] = [report for report in reports if report["committed"]]
    [loser] = [report for report in reports if not report["committed"]]
    assert loser["error_type"] == "_duckdb.TransactionException" or loser["error_type"].endswith("TransactionException")
    assert loser["conflict"] and "Transaction conflict" in loser["error"], loser
    assert not loser["landing_file_error"]
    # The loser's period is as it was, untouched; the winner's holds its new rows.
    expected = dict(loaded_lake["original"])
    expected[winner["period"]] = (f"reloaded-{winner['period']}.csv", expected[winner["period"]][1])
    assert rows_by_period(lake_con) == expected


def test_the_production_profile_reaches_the_lake_from_the_environment(lake_settings, monkeypatch, tmp_path):
    from mlplatform.orchestration.resources import resources_for

    monkeypatch.setenv("MLPLATFORM_LAKE_CATALOG", lake_settings.catalog)
    monkeypatch.setenv("MLPLATFORM_LAKE_DATA_PATH", lake_settings.data_path)
    monkeypatch.setenv("MLPLATFORM_S3_ENDPOINT", lake_settings.s3_endpoint)
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))  # the default extension folder's parent
    with dg.build_resources({"duckdb": resources_for("production")["duckdb"]}) as resources:
        with resources.duckdb.get_connection() as con:
            con.execute("CREATE TABLE probe AS SELECT 42 AS answer")
        with resources.duckdb.get_connection() as con:
            assert con.execute("SELECT answer FROM probe").fetchall() == [(42,)]
            assert con.execute("SELECT current_database()").fetchone()[0] == lake.LAKE_ALIAS
    assert (tmp_path / "data" / lake.EXTENSION_DIR_NAME).is_dir()


def test_the_local_profile_keeps_the_embedded_file(monkeypatch, tmp_path):
    from mlplatform.orchestration.resources import resources_for

    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    resource = resources_for("local")["duckdb"]
    assert resource.lake is None
    with resource.get_connection() as con:
        con.execute("CREATE TABLE probe AS SELECT 1 AS one")
    assert (tmp_path / "data" / "warehouse.duckdb").is_file()


# ---------------------------------------------------------------------------------------------------------------
# retry_on_conflict and the settings, no server needed
# ---------------------------------------------------------------------------------------------------------------

CONFLICT = duckdb.TransactionException(
    "TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction.\nTransaction conflict - "
    'attempting to insert into table with index "2" - but another transaction has deleted from it'
)


def flaky(failures: list[BaseException]):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return fn, calls


def test_retry_runs_the_whole_call_again_on_conflicts_only(monkeypatch):
    sleeps = []
    monkeypatch.setattr(lake.time, "sleep", sleeps.append)
    fn, calls = flaky([CONFLICT, CONFLICT])
    assert lake.retry_on_conflict(fn, attempts=3, backoff=0.1) == "done"
    assert len(calls) == 3 and len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.15 and 0.1 <= sleeps[1] <= 0.3  # doubling, with jitter

    fn, calls = flaky([CONFLICT, CONFLICT])
    with pytest.raises(duckdb.TransactionException, match="Transaction conflict"):
        lake.retry_on_conflict(fn, attempts=2, backoff=0)
    assert len(calls) == 2

    for other in (duckdb.TransactionException("cannot rollback - no transaction is active"), ValueError("no")):
        fn, calls = flaky([other])
        with pytest.raises(type(other)):
            lake.retry_on_conflict(fn, backoff=0)
        assert len(calls) == 1
    with pytest.raises(ValueError, match="at least 1"):
        lake.retry_on_conflict(lambda: None, attempts=0)


def test_a_conflict_in_load_raw_partition_is_retried_and_never_a_landing_error(
    monkeypatch, flights, two_months, tmp_path
):
    """On an embedded file: a conflict is injected at the COMMIT of the first two attempts."""
    real, commits = warehouse.transaction, []

    @contextmanager
    def conflicting(con):
        commits.append(1)
        if len(commits) > 2:
            with real(con):
                yield
            return
        con.execute("BEGIN TRANSACTION")
        yield
        con.execute("ROLLBACK")
        raise CONFLICT

    monkeypatch.setattr(warehouse, "transaction", conflicting)
    monkeypatch.setattr(lake.time, "sleep", lambda seconds: None)
    file = landing.period_file(two_months, flights, "flights", PERIODS[0])
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        rows = warehouse.load_raw_partition(con, flights, flights.contracts["flights"], PERIODS[0], file)
        assert rows > 0 and len(commits) == 3
        commits.clear()
        monkeypatch.setattr(warehouse, "retry_on_conflict", lambda fn: fn())
        with pytest.raises(duckdb.TransactionException, match="Transaction conflict"):
            warehouse.load_raw_partition(con, flights, flights.contracts["flights"], PERIODS[0], file)


def test_settings_are_checked_and_endpoints_parsed():
    assert lake.parse_endpoint("minio:9000") == ("minio:9000", False)
    assert lake.parse_endpoint("http://127.0.0.1:9000") == ("127.0.0.1:9000", False)
    assert lake.parse_endpoint("https://s3.example.com") == ("s3.example.com", True)
    with pytest.raises(lake.LakeError, match="host:port"):
        lake.parse_endpoint("ftp://x/y")
    with pytest.raises(lake.LakeError, match="catalog"):
        lake.LakeSettings(catalog="", data_path="s3://b/")
    with pytest.raises(lake.LakeError, match="data path"):
        lake.LakeSettings(catalog="dbname=x", data_path=" ")
    for name in lake.EXTENSIONS:
        assert lake.wheel_extension(name).is_file()


def test_extensions_go_to_a_temp_folder_where_the_configured_one_cannot_be_written(monkeypatch, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(lake.tempfile, "gettempdir", lambda: str(tmp_path / "temp"))
    with duckdb.connect(config={"extension_directory": str(blocked / "extensions")}) as con:
        lake.install_extensions(con, blocked / "extensions")
        loaded = con.execute(
            "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded AND install_mode = 'CUSTOM_PATH'"
        ).fetchall()
    assert {name for name, _ in loaded} == {"httpfs", "postgres_scanner", "ducklake"}
    assert all(path.startswith(str(tmp_path / "temp")) for _, path in loaded)


def test_a_catalog_that_cannot_be_reached_fails_without_showing_its_password(tmp_path, extension_directory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    settings = lake.LakeSettings(
        catalog=f"dbname=lake host=127.0.0.1 port={port} user=lake password=s3cr3t-pw connect_timeout=5",
        data_path=str(tmp_path / "data") + "/",
        extension_directory=str(extension_directory),
    )
    with pytest.raises(duckdb.IOException, match=r"password=\*\*\*") as raised:
        lake.connect(lake=settings)
    assert "s3cr3t" not in str(raised.value) and raised.value.__context__ is None
    assert lake.redact("host=h password='a b\\' c' user=u") == "host=h password=*** user=u"
