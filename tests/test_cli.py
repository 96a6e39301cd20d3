import duckdb
import pytest

from mlplatform.cli import main, prepare_dagster_home


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_seed_fills_the_configured_landing_zone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    assert main(["seed", "--months", "2013-01..2013-02"]) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "landing" / "flights").iterdir()) == [
        "2013-01.csv",
        "2013-02.csv",
    ]
    assert "7 files written" in capsys.readouterr().out


def test_materialize_runs_reference_then_months_in_order(data_dir, dagster_home, capsys):
    assert main(["materialize", "--months", "2013-01..2013-02"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "reference_data",
        "monthly_pipeline [2013-01]",
        "monthly_pipeline [2013-02]",
        "train_delay_model",
    ]
    assert all(line.endswith("succeeded") for line in out[:3])
    assert (
        out[3]
        == "train_delay_model: skipped, flight_features has no rows for 2013-03, 2013-04, 2013-05, 2013-06, 2013-07 yet"
    )
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        months = con.execute("SELECT DISTINCT partition_month FROM flight_features ORDER BY 1").fetchall()
    assert months == [("2013-01",), ("2013-02",)]
    # The runs are in the configured instance, as if launched from the UI.
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == 3


def test_materialize_stops_at_the_first_failed_month(data_dir, dagster_home, capsys):
    (data_dir / "landing" / "flights" / "2013-02.csv").write_text("not,a,flights,file\n")
    assert main(["materialize", "--months", "2013-01..2013-03"]) == 1
    captured = capsys.readouterr()
    assert "monthly_pipeline [2013-02]" in captured.err and "raw_flights" in captured.err
    assert "2013-03" not in captured.out


def test_bad_months_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["seed", "--months", "2013-13"])
    assert raised.value.code == 2 and "YYYY-MM" in capsys.readouterr().err


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
