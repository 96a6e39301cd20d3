"""Declarations and inputs cannot inject; secrets stay out of logs, errors, metadata and the UI; the UI listens on
127.0.0.1 unless told otherwise."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from mlplatform.alerts import send_alert
from mlplatform.data import quality
from mlplatform.data.contracts import PLATFORM_COLUMNS
from mlplatform.data.features import build_features
from mlplatform.data.parsing import LINE_COLUMN, LOAD_FAILURES_COLUMN
from mlplatform.data.validation import split_partition
from mlplatform.data.versioning import DVCError, DVCRepo, export_table, file_md5
from mlplatform.data.warehouse import (
    FAILED_CHECKS_COLUMN,
    FAILURES_COLUMN,
    SOURCE_COLUMN,
    content_hash,
    load_raw_partition,
)
from mlplatform.datasets import DEFS_DIR, DeclarationError, load_dataset
from mlplatform.datasets.dataset import CONTRACT_FILE, DEFS_FILE, PERIOD_COLUMN
from mlplatform.datasets.scaffold import scaffold_dataset
from mlplatform.definitions import build_definitions
from mlplatform.logs import get_logger, redact
from mlplatform.monitoring import drift
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.resources import resources_for
from mlplatform.orchestration.resources.dvc import default_executable
from mlplatform.orchestration.resources.warehouse import Warehouse

ROOT = Path(__file__).parents[1]
PASSWORD = "s3cr3t-pw-1234"


def _copy(tmp_path: Path, dataset: str) -> Path:
    folder = tmp_path / dataset
    shutil.copytree(DEFS_DIR / dataset, folder, ignore=shutil.ignore_patterns("seed"))
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _refused(folder: Path, file: str) -> str:
    with pytest.raises(DeclarationError) as raised:
        load_dataset(folder)
    assert raised.value.path == folder / file
    return raised.value.problem


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("name: employment\n", "name: 'employment\"; DROP SCHEMA main CASCADE; --'\n", "attributes.name"),
        ("name: employment\n", "name: ../../outside\n", "attributes.name"),
        ("name: employment\n", "name: Employment\n", "attributes.name"),
        ("people: {time_column: year}", "'people/../x': {time_column: year}", "attributes.landing.sources"),
        ("key: [id]", "key: ['id\" ) --']", "attributes.features.key.0"),
        ("smoothing: 20", "'smoothing; DROP TABLE x': 20", "attributes.features.params"),
        ("AGEP: [people.AGEP]", "'AGEP\"\"': [people.AGEP]", "attributes.features.lineage"),
        ("label: is_employed", "label: 'is_employed OR 1=1'", "attributes.predictor.label"),
        ("group_by: [SEX, RAC1P]", "group_by: ['SEX, RAC1P']", "attributes.evaluation.group_by.0"),
        ("path: seed/employment_MA_reference.pq", "path: ../../../../etc/passwd", "attributes.seed.files"),
        ("path: seed/employment_MA_reference.pq", "path: /etc/passwd", "attributes.seed.files"),
    ],
)
def test_a_name_or_path_that_could_inject_is_refused_in_defs_yaml(tmp_path, old, new, where):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, old, new)
    assert where in _refused(folder, DEFS_FILE)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("  people:\n", "  'people\"; --':\n", "tables"),
        ("      AGEP: {type", "      'AGEP\" VARCHAR, x': {type", "tables.people.columns"),
        ("      AGEP: {type", "      'a b': {type", "tables.people.columns"),
        ("natural_key: [id]", "natural_key: ['id; --']", "tables.people.natural_key.0"),
    ],
)
def test_a_table_or_column_name_that_could_inject_is_refused_in_the_contract(tmp_path, old, new, where):
    folder = _copy(tmp_path, "employment")
    _edit(folder / CONTRACT_FILE, old, new)
    assert where in _refused(folder, CONTRACT_FILE)


def test_columns_that_differ_only_in_case_are_refused(tmp_path):
    """DuckDB compares names without case, quoted or not: two such columns would be one."""
    folder = _copy(tmp_path, "employment")
    _edit(folder / CONTRACT_FILE, "      SEX: {type", "      sex: {type: BIGINT}\n      SEX: {type")
    assert "columns 'sex' and 'SEX' differ only in case" in _refused(folder, CONTRACT_FILE)


@pytest.mark.parametrize("column", PLATFORM_COLUMNS)
def test_a_contract_column_named_like_a_platform_column_is_refused(tmp_path, column):
    folder = _copy(tmp_path, "employment")
    _edit(folder / CONTRACT_FILE, "      SEX: {type", f"      {column.upper()}: {{type: BIGINT}}\n      SEX: {{type")
    assert "named like the platform's own columns" in _refused(folder, CONTRACT_FILE)


def test_the_platform_columns_are_the_ones_the_tables_get():
    assert set(PLATFORM_COLUMNS) == {
        PERIOD_COLUMN,
        SOURCE_COLUMN,
        LINE_COLUMN,
        LOAD_FAILURES_COLUMN,
        FAILED_CHECKS_COLUMN,
        FAILURES_COLUMN,
    }


def test_a_dataset_may_not_take_a_reserved_schema(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "name: employment\n", "name: main\n")
    assert _refused(folder, DEFS_FILE).startswith("name: 'main' is a schema DuckDB reserves")


@pytest.mark.parametrize(
    ("reference", "clash"),
    [
        ("features", "landing.reference and the platform both name the table 'features'"),
        ("raw_flights", "landing.reference and landing.sources.flights both name the table 'raw_flights'"),
        ("current_weather", "landing.reference and landing.sources.weather both name the table 'current_weather'"),
    ],
)
def test_a_reference_table_may_not_take_another_tables_name(tmp_path, reference, clash):
    """Else loading the reference table would overwrite that table, or the feature SQL's view of a source."""
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "airports, planes]", f"airports, {reference}]")
    _edit(folder / CONTRACT_FILE, "  planes:\n", f"  {reference}:\n")
    assert _refused(folder, DEFS_FILE) == clash


@pytest.fixture
def keyword_dataset(tmp_path):
    """A dataset named ``order`` whose columns are SQL keywords and a mixed-case name, from a 300-row sample over
    2020 and 2021: legal names, each of which breaks any SQL that pastes it unquoted."""
    rng = random.Random(3)
    sample = tmp_path / "sample.csv"
    with sample.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "from", "group", "Limit", "select"])
        for i in range(1, 301):
            label = int(rng.random() < 0.4)
            limit = round(10 + 5 * label + rng.gauss(0, 2), 2)
            writer.writerow([i, 2020 + (i > 150), ["a", "b", "c"][i % 3], limit, label])
    folder = scaffold_dataset(tmp_path / "defs", "order", sample, "from", "select", "yearly")
    landing = tmp_path / "landing"
    landing.mkdir()
    rows = list(csv.reader(sample.open()))
    for year in ("2020", "2021"):
        with (landing / f"{year}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([rows[0], *(row for row in rows[1:] if row[1] == year)])
    return load_dataset(folder), landing


def test_keyword_names_are_quoted_through_load_validation_features_and_drift(keyword_dataset, tmp_path):
    dataset, landing = keyword_dataset
    contract = dataset.contracts["order"]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        for year in ("2020", "2021"):
            assert load_raw_partition(con, dataset, contract, year, landing / f"{year}.csv") == 150
            assert split_partition(con, dataset, contract, year).clean == 150
            assert build_features(con, dataset, year, dict(dataset.declaration.features.params), 0) == 150
        assert con.execute('SELECT count(*), sum("Limit" > 0)::INT FROM "order"."features"').fetchone() == (300, 300)
        assert quality.natural_key_unique(con, dataset.table("clean_order"), contract.natural_key, "2020").passed
        assert quality.null_shares(con, contract, dataset.table("raw_order"), "2021").passed
        first = export_table(con, dataset.table("features"), "2020", tmp_path / "a.parquet")
        again = export_table(con, dataset.table("features"), "2020", tmp_path / "b.parquet")
        assert file_md5(first) == file_md5(again)
        assert content_hash(con, dataset.table("features"), "2020").startswith("150-")
        kinds = {"Limit": "numeric", "group": "categorical"}
        reference = drift.profile(con, 'SELECT * FROM "order"."features" WHERE period = \'2020\'', kinds)
        report = drift.compare(reference, con, 'SELECT * FROM "order"."features" WHERE period = \'2021\'')
        assert {result.column for result in report.columns} == {"Limit", "group"}
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL").fetchall()
    assert tables == [("order", name) for name in ("clean_order", "features", "order_quarantine", "raw_order")]
    keys = {key.to_user_string() for assets in dataset_definitions(dataset).assets for key in assets.keys}
    assert {"order/raw_order", "order/clean_order", "order/features", "order/model"} <= keys


def test_a_version_to_restore_must_be_an_md5(tmp_path):
    repo = DVCRepo(tmp_path, default_executable(), str(tmp_path / "remote"), tmp_path / "versions")
    for md5, name in (("../../etc", "passwd"), ("0" * 32, "../x"), ("0" * 32 + ".dir", "")):
        with pytest.raises(DVCError, match="a version is a DVC md5 and a plain file name"):
            repo.restore(md5, name)
    assert not (tmp_path / "versions").exists()


def test_redact_masks_passwords_urls_and_secret_variables(monkeypatch):
    monkeypatch.setenv("MLPLATFORM_ALERT_WEBHOOK", "https://hooks.example.com/T01/B02/tok3n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    text = (
        f"host=db password={PASSWORD} user=u; postgresql://lake:{PASSWORD}@db:5432/lake; "
        "posting to https://hooks.example.com/T01/B02/tok3n failed; key wJalrXUtnFEMI"
    )
    assert redact(text) == (
        "host=db password=*** user=u; postgresql://lake:***@db:5432/lake; posting to *** failed; key ***"
    )
    assert redact("host=h password='a b\\' c' user=u") == "host=h password=*** user=u"
    assert (
        redact("http://example.com/path?x=1 and s3://bucket/key") == "http://example.com/path?x=1 and s3://bucket/key"
    )


def test_a_failing_webhook_never_logs_its_url(caplog):
    token = "T0123/B4567/xoxb-secret-token"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    event = {"run_id": "r1", "error": f"attach failed: password={PASSWORD}"}
    for url in (f"http://127.0.0.1:{port}/{token}", f"htp:/127.0.0.1/{token}", f"http://[::1/{token}"):
        assert send_alert(event, url) is False
    assert caplog.text.count("alert webhook failed") == 3
    assert "xoxb-secret-token" not in caplog.text and PASSWORD not in caplog.text
    assert "password=***" in caplog.text and '"webhook_host": "127.0.0.1"' in caplog.text


def test_the_structured_log_redacts_every_value(caplog, monkeypatch):
    monkeypatch.setenv("MLPLATFORM_ALERT_WEBHOOK", "https://hooks.example.com/services/abc/def")
    get_logger().warning(
        "connecting",
        catalog=f"dbname=lake password={PASSWORD}",
        nested={"urls": ["https://hooks.example.com/services/abc/def", f"postgres://u:{PASSWORD}@h/d"]},
    )
    [record] = [json.loads(r.getMessage()) for r in caplog.records if "connecting" in r.getMessage()]
    assert record["catalog"] == "dbname=lake password=***"
    assert record["nested"] == {"urls": ["***", "postgres://u:***@h/d"]}


def test_a_lake_that_cannot_be_attached_leaves_its_password_out_of_the_run(employment, tmp_path, monkeypatch, caplog):
    """A DuckLake catalog that refuses connections fails the step: neither the run's events (what the UI shows)
    nor the logs carry the catalog's password."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    catalog = f"dbname=lake host=127.0.0.1 port={port} user=lake password={PASSWORD} connect_timeout=2"
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    landed = tmp_path / "data" / "landing" / "employment" / "people" / "2015.csv"
    landed.parent.mkdir(parents=True)
    landed.write_text("id\n")  # the step opens the warehouse before it reads the file
    resources = resources_for("local") | {"duckdb": Warehouse(lake_catalog=catalog, lake_data_path=str(tmp_path))}
    definitions = dataset_definitions(employment)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(definitions.assets),
            selection=[dg.AssetKey(["employment", "raw_people"])],
            instance=instance,
            resources=resources,
            partition_key="2015",
            raise_on_error=False,
        )
        assert not result.success
        events = serialize_value(instance.all_logs(result.run_id))
    assert "password=***" in events
    assert PASSWORD not in events and PASSWORD not in caplog.text


def test_the_ui_shows_the_webhook_variable_not_its_url(monkeypatch):
    """The repository snapshot is what the UI, its resource pages included, is served from."""
    monkeypatch.setenv("MLPLATFORM_ALERT_WEBHOOK", "https://hooks.example.com/services/T0/B0/tok3n-in-path")
    snapshot = serialize_value(RepositorySnap.from_def(build_definitions("local").get_repository_def()))
    assert "tok3n-in-path" not in snapshot and "MLPLATFORM_ALERT_WEBHOOK" in snapshot
    assert resources_for("local")["alerts"].process_config_and_initialize().webhook_url.endswith("tok3n-in-path")


def _dagster_dev_line(*make_args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["make", "-n", "run", *make_args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    [line] = [line for line in done.stdout.splitlines() if "dagster dev" in line]
    return line


def test_make_run_binds_the_ui_to_localhost_unless_told_otherwise():
    env = {**os.environ, "HOST": "0.0.0.0"}  # some shells export HOST: it must not widen the UI
    assert _dagster_dev_line(env=env).endswith("dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000")
    assert " -h 0.0.0.0 -p 3001" in _dagster_dev_line("HOST=0.0.0.0", "PORT=3001", env=env)
