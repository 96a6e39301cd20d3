"""The `mlplatform` command: seed, materialize, datasets and new-dataset, against temp data folders and instances."""

from __future__ import annotations

import csv
import gc
import random
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.defs_state.base import _current_storage
from test_sensors import land_a_year_later

from mlplatform.cli import main, prepare_dagster_home
from mlplatform.datasets import load_dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, clean_table, quarantine_table, raw_table
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.dead_runs import PROCESS_TAG
from mlplatform.orchestration.resources import resources_for


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_seed_fills_the_configured_landing_zone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    landing = tmp_path / "data" / "landing"
    assert main(["seed", "--dataset", "flights", "--partitions", "2013-01..2013-02"]) == 0
    assert sorted(p.name for p in (landing / "flights" / "flights").iterdir()) == ["2013-01.csv", "2013-02.csv"]
    assert sorted(p.name for p in (landing / "flights" / "reference").iterdir()) == [
        "airlines.csv",
        "airports.csv",
        "planes.csv",
    ]
    assert "flights: 7 files written or changed" in capsys.readouterr().out  # 2 flights, 2 weather, 3 reference
    assert main(["seed", "--dataset", "flights", "--partitions", "2013-01..2013-02"]) == 0
    assert "flights: 0 files written or changed" in capsys.readouterr().out  # the same bytes: left alone

    assert main(["seed", "--dataset", "employment", "--partitions", "2016"]) == 0
    assert [p.name for p in (landing / "employment" / "people").iterdir()] == ["2016.csv"]
    assert "employment: 1 files written or changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed", "--dataset", "flights", "--partitions", "2013-13"], "expected a monthly period like 2013-01, got"),
        (["seed", "--dataset", "employment", "--partitions", "2016-01"], "expected a yearly period like 2016, got"),
        (["seed", "--dataset", "flights", "--partitions", "2013-05..2013-02"], "empty period range"),
        (["seed", "--dataset", "trains"], "no dataset named 'trains'; declared: employment, flights"),
    ],
)
def test_bad_periods_and_unknown_datasets_are_reported_without_a_traceback(
    tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlplatform seed: ") and message in err and "Traceback" not in err


def test_a_period_spec_without_a_dataset_applies_to_the_datasets_of_its_grain(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    assert main(["seed", "--partitions", "2016"]) == 0
    out = capsys.readouterr().out
    assert "flights: skipped, expected a monthly period like 2013-01, got '2016'" in out
    assert "employment: 1 files written or changed" in out
    assert [p.name for p in (tmp_path / "data" / "landing" / "employment" / "people").iterdir()] == ["2016.csv"]
    assert not (tmp_path / "data" / "landing" / "flights").exists()


def test_a_period_spec_no_dataset_can_read_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    assert main(["seed", "--partitions", "2013-13"]) == 1
    err = capsys.readouterr().err
    assert "flights: expected a monthly period like 2013-01, got '2013-13'" in err
    assert "employment: expected a yearly period like 2016" in err
    assert not (tmp_path / "data" / "landing").exists()


def test_datasets_lists_what_has_landed_and_what_has_not(data_dir, dagster_home, capsys):
    notes = data_dir / "landing" / "employment" / "people" / "notes.csv"
    notes.write_text("not a period\n")
    assert main(["datasets"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "employment: yearly from 2015 (open-ended); sources people",
        "  landed:   2015..2018 (4 periods)",
        "  features: none",
        "  model employment: champion none yet",
        f"  not taken in: {notes}: expected a yearly period like 2016, got 'notes'",
        "flights: monthly from 2013-01 (open-ended); sources flights, weather; reference airlines, airports, planes",
        "  landed:   2013-01..2013-12 (12 periods)",
        "  features: none",
        "  model flights_delay: champion none yet",
    ]


def test_materialize_loads_reference_then_periods_in_order_into_the_next_year(data_dir, dagster_home, capsys):
    landing = data_dir / "landing"
    january = land_a_year_later(landing)  # 2014-01: 2013-01's flights and weather, one year on
    assert main(["materialize", "--dataset", "flights", "--partitions", f"2013-12..{january}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "flights_reference_data",
        "flights_period_pipeline [2013-12]",
        "flights_period_pipeline [2014-01]",
        "flights_training",
    ]
    assert all(line.endswith("succeeded") for line in out[:3])
    missing = ", ".join(f"2013-{month:02d}" for month in range(1, 8))  # the declared window and target
    assert out[3] == f"flights_training: skipped, flights features have no rows for {missing} yet"

    # The new year's file: every row is clean or quarantined, none dropped, none from another period.
    landed = len((landing / "flights" / "flights" / f"{january}.csv").read_text().splitlines()) - 1
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        raw, clean, quarantined = (
            con.execute(f"SELECT count(*) FROM flights.{table} WHERE period = ?", [january]).fetchone()[0]
            for table in ("raw_flights", "clean_flights", "flights_quarantine")
        )
        periods = con.execute("SELECT DISTINCT period FROM flights.features ORDER BY 1").fetchall()
    assert raw == clean + quarantined == landed == 27_004
    assert periods == [("2013-12",), (january,)]
    # The runs are in the configured instance, as if launched from the UI.
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records()
    assert sorted(record.dagster_run.tags.get("dagster/partition", "-") for record in runs) == [
        "-",
        "2013-12",
        january,
    ]

    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "  landed:   2013-01..2014-01 (13 periods)" in listing
    assert "  features: 2013-12..2014-01 (2 periods)" in listing


def test_materialize_stops_at_the_first_failed_period(data_dir, dagster_home, capsys):
    landing_file = data_dir / "landing" / "flights" / "flights" / "2013-01.csv"
    landing_file.write_text("not,a,flights,file\n")
    assert main(["materialize", "--dataset", "flights", "--partitions", "2013-01..2013-02"]) == 1
    captured = capsys.readouterr()
    assert "flights_period_pipeline [2013-01]" in captured.err and "flights__raw_flights" in captured.err
    # The one line that says which file and what is wrong with it, without a traceback.
    assert f"  flights__raw_flights: {landing_file}, line 1: no header line (the first line is " in captured.err
    assert "Traceback" not in captured.err
    assert "2013-02" not in captured.out


def test_dagster_home_defaults_to_dot_dagster_with_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    home = prepare_dagster_home()
    assert home == tmp_path / ".dagster" and (home / "dagster.yaml").read_text().startswith("telemetry")


def test_dvc_failures_are_reported_without_a_traceback(data_dir, dagster_home, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DVC", str(data_dir / "no-such-dvc"))
    assert main(["init"]) == 1
    assert "mlplatform init: the dvc program was not found" in capsys.readouterr().err


def test_materialize_prints_the_first_line_of_a_failed_steps_error(data_dir, dagster_home, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DVC", str(data_dir / "no-such-dvc"))
    assert main(["materialize", "--dataset", "employment", "--partitions", "2016"]) == 1
    lines = capsys.readouterr().err.splitlines()
    failed = [line for line in lines if line.startswith("  employment__validate_people: ")]
    assert len(failed) == 1 and "DVCError: the dvc program was not found" in failed[0]


def test_materialize_loads_its_definitions_with_its_own_instance(data_dir, dagster_home, monkeypatch, capsys):
    """A process that entered another instance before (a test session, a notebook) leaves Dagster's current defs
    state storage pointing at it; once that instance is gone, building the definitions outside the command's own
    instance failed with "Attempted to resolve undefined DagsterInstance weakref"."""
    with dg.instance_for_test() as gone:
        stale = gone.defs_state_storage
    del gone
    gc.collect()
    token = _current_storage.set(stale)
    try:
        monkeypatch.setenv("MLPLATFORM_DVC", str(data_dir / "no-such-dvc"))  # stop at the first DVC call: quick
        assert main(["materialize", "--dataset", "employment", "--partitions", "2016"]) == 1
    finally:
        _current_storage.reset(token)
    err = capsys.readouterr().err
    assert "DVCError: the dvc program was not found" in err and "weakref" not in err


REGIONS, CHANNELS = ["east", "north", "south", "west"], ["phone", "store", "web"]
HEADER = ["id", "year", "region", "channel", "amount", "visits", "churned"]


@pytest.fixture
def churn_sample(tmp_path) -> Path:
    """300 customers, 150 in 2020 and 150 in 2021; amount rises with churned, visits is sometimes missing."""
    rng = random.Random(7)
    path = tmp_path / "churn.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(1, 301):
            churned = int(rng.random() < 0.3)
            amount = round(50 + 40 * churned + rng.gauss(0, 10), 2)
            visits = "NA" if i % 10 == 0 else rng.randint(0, 30)
            writer.writerow([i, 2020 if i <= 150 else 2021, REGIONS[i % 4], CHANNELS[i % 3], amount, visits, churned])
    return path


def test_new_dataset_scaffolds_a_dataset_that_materializes_a_period(
    tmp_path, project, churn_sample, monkeypatch, capsys
):
    defs_dir = tmp_path / "defs"
    new = ["new-dataset", "churn", "--sample", str(churn_sample), "--time-column", "year", "--defs-dir", str(defs_dir)]
    assert main([*new, "--label", "churned"]) == 0
    folder = defs_dir / "churn"
    assert f"dataset churn written to {folder}" in capsys.readouterr().out
    assert sorted(path.name for path in folder.iterdir()) == ["contract.yaml", "defs.yaml", "features.sql"]
    assert main([*new, "--label", "churned"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*new[:1], "other", *new[2:], "--label", "region"]) == 1
    assert "not 0/1" in capsys.readouterr().err and not (defs_dir / "other").exists()

    # 2021's landing file: the sample's rows of 2021 and one customer in a region the contract does not know.
    dataset = load_dataset(folder)
    assert (dataset.periods.grain, dataset.periods.start) == ("yearly", "2020")
    landing = project / "data" / "landing" / "churn" / "churn" / "2021.csv"
    landing.parent.mkdir(parents=True)
    with churn_sample.open(newline="") as handle:
        header, *sample = list(csv.reader(handle))
    unknown_region = ["1000", "2021", "central", "web", "55.0", "3", "0"]
    with landing.open("w", newline="") as handle:
        rows_2021 = [row for row in sample if row[1] == "2021"]
        csv.writer(handle, lineterminator="\n").writerows([header, *rows_2021, unknown_region])
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(project / "data"))
    names = [raw_table("churn"), clean_table("churn"), quarantine_table("churn"), FEATURES_TABLE]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(dataset_definitions(dataset).assets),
            selection=[asset_key(dataset, name) for name in names],
            partition_key="2021",
            instance=instance,
            resources=resources_for("local"),
        )
    rows = {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata[
            "dagster/row_count"
        ].value
        for event in result.get_asset_materialization_events()
    }
    assert rows == {
        "churn/raw_churn": 151,
        "churn/clean_churn": 150,
        "churn/churn_quarantine": 1,
        "churn/features": 150,
    }
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    with resources_for("local")["duckdb"].get_connection() as con:
        [(failed,)] = con.execute("SELECT failed_checks FROM churn.churn_quarantine").fetchall()
        labels = con.execute("SELECT count(*) FILTER (is_churned) FROM churn.features").fetchone()[0]
    assert "region:isin" in failed
    assert labels == sum(1 for row in rows_of(landing) if row["churned"] == "1" and row["region"] != "central")


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_command_works_under_the_production_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_ENV", "production")
    monkeypatch.delenv("MLPLATFORM_LANDING_DIR", raising=False)
    assert main(["seed", "--dataset", "employment", "--partitions", "2016"]) == 1
    assert 'environment variable "MLPLATFORM_LANDING_DIR" which is not set' in capsys.readouterr().err

    project = tmp_path / "repo"
    project.mkdir()
    monkeypatch.setenv("MLPLATFORM_LANDING_DIR", str(tmp_path / "shared-landing"))
    monkeypatch.setenv("MLPLATFORM_DVC_REPO", str(project))
    monkeypatch.setenv("MLPLATFORM_DVC_VERSIONS_DIR", str(project / "versions"))
    monkeypatch.setenv("MLPLATFORM_DVC_REMOTE_URL", str(tmp_path / "remote"))
    monkeypatch.setenv("MLPLATFORM_S3_ENDPOINT", "")  # set, and empty: AWS S3, or as here a remote of another kind
    assert main(["seed", "--dataset", "employment", "--partitions", "2016"]) == 0
    assert (tmp_path / "shared-landing" / "employment" / "people" / "2016.csv").is_file()


def test_materialize_first_fails_the_run_a_killed_command_left_and_frees_its_slot(
    seeded_landing, tmp_path, dagster_home, monkeypatch, capsys
):
    """The wedge: a command killed mid-run leaves its run STARTED, holding the `duckdb` pool's only slot, and without
    this every later run would wait for the slot forever."""
    shutil.copytree(seeded_landing / "flights" / "reference", tmp_path / "data" / "landing" / "flights" / "reference")
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(Path(__file__).parents[1])  # the shipped dagster.yaml goes into the new Dagster home
    prepare_dagster_home()
    code = f"from mlplatform.orchestration.dead_runs import in_process_run_tags as t; print(t()[{PROCESS_TAG!r}])"
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    with dg.DagsterInstance.get() as instance:
        run = instance.add_run(
            dg.DagsterRun(
                job_name="flights_period_pipeline",
                status=dg.DagsterRunStatus.STARTED,
                tags={PROCESS_TAG: killed, "dagster/partition": "2013-03"},
            )
        )
        instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
        assert instance.event_log_storage.claim_concurrency_slot(
            "duckdb", run.run_id, "flights__raw_flights"
        ).is_claimed

    assert main(["materialize", "--dataset", "flights"]) == 0  # the reference tables: no period has landed
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"flights_period_pipeline [2013-03]: run {run.run_id} lost its process; marked failed, its pool slots freed"
    )
    assert out[1].startswith("flights_reference_data: run ") and out[1].endswith(" succeeded")
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
