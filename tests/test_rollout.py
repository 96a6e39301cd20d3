"""Gradual rollout: the canary's rows, the registry's rollout log, the decisions, and real runs in which a canary
steps up to champion or is rolled back by itself."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pytest
import test_training_assets
from test_training_assets import RETRAIN, SMALL_MODEL, _materialize, _metadata, _warehouse

from mlplatform.cli import main
from mlplatform.datasets.declaration import RolloutSection
from mlplatform.ml import registry
from mlplatform.ml.registry import ModelVersion, RegistryError, RolloutStep
from mlplatform.ml.rollout import HELD, Evidence, judge
from mlplatform.ml.scoring import canary_bucket_sql
from mlplatform.orchestration.assets.serving import TRIGGER_TAG
from mlplatform.orchestration.resources import resources_for

MODEL = "flights_delay"
# flights 2013-01..03 materialized once, a private copy per test (the fixtures of test_training_assets).
three_periods_once, three_periods = test_training_assets.three_periods_once, test_training_assets.three_periods
STEPS = [0.1, 0.5, 1.0]


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def _register(con, *versions, passed=True):
    for version in versions:
        registry.register(
            con, ModelVersion(MODEL, version, "2013-07", "2013-01..2013-06", "data", {"roc_auc": 0.7}, passed, "why")
        )


def _bucket(*key) -> float:
    """A row's bucket computed without DuckDB: the first 32 bits of the md5 of its key's text."""
    text = "\x1f".join(str(value) for value in key)
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16) / 2**32


def test_a_row_s_bucket_is_the_md5_of_its_key_and_canaries_nest(con):
    con.execute(
        "CREATE TABLE flights AS SELECT 2013 AS year, i % 12 + 1 AS month, i % 28 + 1 AS day, "
        "['UA', 'AA', 'B6'][i % 3 + 1] AS carrier, i AS flight, 'EWR' AS origin, 600 + i % 900 AS sched_dep_time "
        "FROM range(20000) t(i)"
    )
    key = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
    rows = con.execute(f"SELECT {', '.join(key)}, {canary_bucket_sql(key)} FROM flights").fetchall()
    # The same number md5 gives outside DuckDB: no engine's hash function, so stable across versions and runs.
    assert all(bucket == pytest.approx(_bucket(*values), abs=1e-12) for *values, bucket in rows)
    buckets = np.array([bucket for *_, bucket in rows])
    assert buckets.min() >= 0 and buckets.max() < 1
    tenth, half = set(np.flatnonzero(buckets < 0.1)), set(np.flatnonzero(buckets < 0.5))
    assert tenth < half  # a row in the 10% canary stays in the 50% one
    assert 0.09 < len(tenth) / len(rows) < 0.11 and 0.48 < len(half) / len(rows) < 0.52


def test_rollout_settings_must_step_up_to_every_row():
    assert RolloutSection().steps == STEPS
    for steps in ([0.1, 0.5], [0.5, 0.1, 1.0], [0.0, 1.0], [0.5, 0.5, 1.0]):
        with pytest.raises(ValueError, match="steps"):
            RolloutSection(steps=steps)
    assert RolloutSection(steps=[1.0]).steps == [1.0]  # promote whole


def test_a_rollout_steps_up_then_completes_as_a_promotion(con):
    _register(con, "a.dir", "b.dir")
    with pytest.raises(RegistryError, match="no champion to be rolled out beside"):
        registry.start_rollout(con, MODEL, "b.dir", STEPS, "drift")
    registry.promote(con, MODEL, "a.dir", "manual")
    with pytest.raises(RegistryError, match=r"promote b\.dir whole"):
        registry.start_rollout(con, MODEL, "b.dir", [1.0], "drift")
    started = registry.start_rollout(con, MODEL, "b.dir", STEPS, "drift", note="run 1")
    assert (started.version, started.champion_version, started.share, started.step) == ("b.dir", "a.dir", 0.1, 0)
    assert registry.start_rollout(con, MODEL, "b.dir", STEPS, "drift") == started  # started once
    assert registry.champion(con, MODEL).version == "a.dir"  # the champion serves the rest meanwhile

    half = registry.record_rollout_step(con, started, RolloutStep("stepped_up", "as good", "2013-08", 0.71, 0.70, 2000))
    assert (half.share, half.step, half.started_at) == (0.5, 1, started.started_at)
    with pytest.raises(RegistryError, match="changed while it was being decided"):
        registry.record_rollout_step(con, started, RolloutStep("stepped_up", "decided on stale state"))
    assert (
        registry.record_rollout_step(con, half, RolloutStep("completed", "as good", "2013-09", 0.7, 0.7, 9000)) is None
    )

    champion = registry.champion(con, MODEL)
    assert (champion.version, champion.previous_version, champion.reason) == ("b.dir", "a.dir", "drift")
    assert champion.note == "rollout completed: as good" and registry.rollout(con, MODEL) is None
    history = registry.rollout_history(con, MODEL)
    assert [(e["event"], e["share"], e["period"]) for e in history] == [
        ("completed", 1.0, "2013-09"),
        ("stepped_up", 0.5, "2013-08"),
        ("started", 0.1, None),
    ]
    assert history[1]["canary_roc_auc"] == 0.71 and history[1]["labelled_rows"] == 2000


def test_a_rollout_ends_when_rolled_back_aborted_superseded_or_promoted_by_hand(con):
    _register(con, "a.dir", "b.dir", "c.dir")
    _register(con, "bad.dir", passed=False)
    registry.promote(con, MODEL, "a.dir", "manual")
    with pytest.raises(RegistryError, match="failed its gate"):
        registry.start_rollout(con, MODEL, "bad.dir", STEPS, "drift")
    serving = registry.start_rollout(con, MODEL, "b.dir", STEPS, "drift")
    assert (
        registry.record_rollout_step(con, serving, RolloutStep("rolled_back", "worse", "2013-08", 0.6, 0.7, 2000))
        is None
    )
    assert registry.champion(con, MODEL).version == "a.dir"

    registry.start_rollout(con, MODEL, "b.dir", STEPS, "manual")
    assert registry.start_rollout(con, MODEL, "c.dir", STEPS, "drift").version == "c.dir"  # b.dir is superseded
    registry.promote(con, MODEL, "b.dir", "manual", note="by hand")  # c.dir's rollout ends: b.dir is champion
    registry.start_rollout(con, MODEL, "c.dir", STEPS, "drift")
    registry.promote(con, MODEL, "c.dir", "manual")  # promoting the canary by hand completes its rollout
    registry.start_rollout(con, MODEL, "a.dir", STEPS, "scheduled")
    registry.rollback(con, MODEL)  # the champion it was compared with goes: so does the rollout
    assert registry.rollout(con, MODEL) is None and registry.champion(con, MODEL).version == "b.dir"
    registry.start_rollout(con, MODEL, "a.dir", STEPS, "scheduled")
    assert registry.abort_rollout(con, MODEL, "by hand").version == "a.dir"
    with pytest.raises(RegistryError, match="no rollout under way"):
        registry.abort_rollout(con, MODEL, "again")

    events = [(e["event"], e["version"], e["note"]) for e in reversed(registry.rollout_history(con, MODEL))]
    assert events == [
        ("started", "b.dir", "its gate passed"),
        ("rolled_back", "b.dir", "worse"),
        ("started", "b.dir", "its gate passed"),
        ("aborted", "b.dir", "superseded by c.dir"),
        ("started", "c.dir", "its gate passed"),
        ("aborted", "c.dir", "superseded by the promotion of b.dir"),
        ("started", "c.dir", "its gate passed"),
        ("completed", "c.dir", "promoted whole: manual"),
        ("started", "a.dir", "its gate passed"),
        ("aborted", "a.dir", "champion c.dir rolled back"),
        ("started", "a.dir", "its gate passed"),
        ("aborted", "a.dir", "by hand"),
    ]
    assert all(
        e["share"] == 0.0 for e in registry.rollout_history(con, MODEL) if e["event"] in ("aborted", "rolled_back")
    )


def _evidence(canary, champion, labels, canary_rows=None, missed_rows=0):
    labels = np.asarray(labels)
    return Evidence(labels, np.asarray(canary), np.asarray(champion), canary_rows or len(labels), missed_rows)


def test_the_canary_steps_up_within_the_tolerance_and_is_rolled_back_beyond_it():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 4000)
    good = labels * 0.3 + rng.random(4000)  # ROC AUC about 0.75
    noise = rng.random(4000)  # about 0.5
    state = registry.Rollout(MODEL, "b.dir", "a.dir", (0.1, 0.5, 1.0), 0, "drift", None, 1)
    stepped = judge(_evidence(good, good, labels), state, "2013-08", 0.01, 1000)
    assert stepped.event == "stepped_up" and "up to 50%" in stepped.note and stepped.labelled_rows == 4000
    assert stepped.canary_roc_auc == stepped.champion_roc_auc > 0.7
    last = judge(_evidence(good, good, labels), replace(state, step=1), "2013-09", 0.01, 1000)
    assert last.event == "completed" and "it serves every row" in last.note
    worse = judge(_evidence(noise, good, labels), state, "2013-08", 0.01, 1000)
    assert worse.event == "rolled_back" and worse.canary_roc_auc < worse.champion_roc_auc - 0.01
    assert "worse by more than 0.0100" in worse.note


def test_a_period_that_cannot_tell_holds_the_rollout():
    state = registry.Rollout(MODEL, "b.dir", "a.dir", (0.1, 0.5, 1.0), 1, "drift", None, 2)
    labels = np.array([0, 1] * 600)
    assert "scored before the rollout" in judge(_evidence([], [], [], canary_rows=0), state, "2013-08", 0.01, 10).note
    stale = judge(_evidence(labels, labels, labels, missed_rows=7), state, "2013-08", 0.01, 10)
    assert stale.event == HELD and "scored before the canary served 50%: 7 rows" in stale.note
    assert judge(_evidence(labels, labels, labels), state, "2013-08", 0.01, 5000).event == HELD  # too few rows
    ones = np.ones(2000)
    assert "both classes" in judge(_evidence(ones, ones, ones), state, "2013-08", 0.01, 10).note


# A model the gate lets through (above the baseline) that is a little worse than the champion: ROC AUC about 0.680
# on 2013-03 against the champion's 0.691.
WORSE_MODEL = {"hidden": [2], "max_epochs": 1, "batch_size": 512, "learning_rate": 0.003}
AS_GOOD_MODEL = {**SMALL_MODEL, "seed": 7}  # about 0.698
KEY = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]


def _train(model_config, trigger="drift"):
    """Train another model on the training set built, its gate loosened only against the champion."""
    ops = {
        "flights__model": {"config": model_config},
        "flights__model_evaluation": {"config": {"champion_tolerance": 1.0}},
    }
    return _metadata(_materialize({"ops": ops}, names=RETRAIN, tags={TRIGGER_TAG: trigger}), "champion_model")


def _score(period="2013-03", names=("predictions", "rollout"), **rollout_config):
    """Score the period and decide the rollout on it; the predictions' and the rollout's metadata and the check."""
    config = {"ops": {"flights__rollout": {"config": rollout_config}}} if rollout_config else None
    result = _materialize(run_config=config, names=list(names), partition=period)
    [check] = result.get_asset_check_evaluations()
    predictions = _metadata(result, "predictions") if "predictions" in names else None
    # The step's own materialization: one that completes a rollout records champion_model's too.
    [rollout] = [
        event.metadata
        for event in result.asset_materializations_for_node("flights__rollout")
        if event.asset_key == dg.AssetKey(["flights", "rollout"])
    ]
    return predictions, rollout, check


def _served(data_dir, version):
    """The keys of 2013-03's rows that ``version`` served."""
    with _warehouse(data_dir) as con:
        rows = con.execute(
            f"SELECT {', '.join(KEY)} FROM flights.predictions WHERE period = '2013-03' AND model_version = ?",
            [version],
        ).fetchall()
    return set(rows)


def _registry():
    return resources_for("local")["duckdb"].get_connection()


def test_a_worse_canary_is_rolled_back_by_itself(three_periods, capsys):
    first = _metadata(_materialize(), "champion_model")["champion_version"].value
    started = _train(WORSE_MODEL)
    canary = started["canary_version"].value
    assert started["champion_version"].value == first and canary != first and started["canary_share"].value == 0.1
    assert started["rollout"].value.startswith(f"canary {canary} serves 10% of each period's rows beside champion")
    assert "| started |" in started["rollout_events"].value

    # The canary serves exactly the rows whose key's md5 falls under 10%; the champion scores every row.
    predictions, rollout, check = _score(tolerance=0.0)
    with _warehouse(three_periods) as con:
        rows = con.execute(
            f"SELECT {', '.join(KEY)}, model_version, champion_version, probability = champion_probability "
            "FROM flights.predictions"
        ).fetchall()
    served = {tuple(row[:7]) for row in rows if row[7] == canary}
    assert served == {tuple(row[:7]) for row in rows if _bucket(*row[:7]) < 0.1}
    assert 0.09 < len(served) / len(rows) < 0.11 and predictions["canary_rows"].value == len(served)
    assert {row[8] for row in rows} == {first} and all(row[9] for row in rows if row[7] == first)
    assert predictions["canary_version"].value == canary and predictions["model_version"].value == first
    # Monitoring judges the champion on every row, the canary's included: on its own held-out month, its AUC.
    monitored = _materialize(run_config=None, names=["model_performance", "prediction_drift"], partition="2013-03")
    performance = _metadata(monitored, "model_performance")
    assert performance["champion_version"].value == first
    assert performance["roc_auc"].value == pytest.approx(performance["holdout_roc_auc"].value, abs=1e-4)
    assert _metadata(monitored, "prediction_drift")["champion_version"].value == first

    # Worse on its share than the champion on the same rows: rolled back, by itself, and the check says why.
    assert rollout["decision"].value == "rolled_back" and rollout["labelled_rows"].value > 2000
    assert rollout["canary_roc_auc"].value < rollout["champion_roc_auc"].value
    assert not check.passed and "worse by more than 0.0000" in check.description
    with _registry() as con:
        assert registry.rollout(con, MODEL) is None and registry.champion(con, MODEL).version == first
    predictions, rollout, check = _score()  # the champion serves every row again
    assert predictions["canary_rows"].value == 0 and _served(three_periods, first) and check.passed
    assert rollout["decision"].value == "no rollout" and rollout["rollout"].value == "none"
    assert main(["rollout", "--dataset", "flights"]) == 0
    shown = capsys.readouterr().out
    assert "flights_delay rollout: none" in shown and "rolled_back" in shown and "worse by more than" in shown

    # A rollout stopped by hand: the champion serves every row, and champion_model's metadata says so.
    assert _train(AS_GOOD_MODEL)["canary_share"].value == 0.1
    assert main(["rollout", "--dataset", "flights", "--abort", "--note", "freeze"]) == 0
    assert "rollout aborted" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey(["flights", "champion_model"]))
    metadata = latest.asset_materialization.metadata
    assert metadata["rollout"].value == "none" and "aborted by hand: freeze" in metadata["rollout_events"].value
    assert metadata["champion_version"].value == first


def test_an_as_good_canary_steps_up_to_champion(three_periods, capsys):
    first = _metadata(_materialize(), "champion_model")["champion_version"].value
    canary = _train(AS_GOOD_MODEL)["canary_version"].value
    assert main(["models", "--dataset", "flights"]) == 0
    listing = capsys.readouterr().out
    assert f"{canary:<37} 2013-03" in listing and "canary 10%" in listing and listing.count("*") == 1
    assert f"flights_delay rollout: canary {canary} serves 10%" in listing

    _, rollout, check = _score()
    tenth = _served(three_periods, canary)
    assert rollout["decision"].value == "stepped_up" and check.passed and "up to 50%" in check.description
    assert rollout["canary_share"].value == 0.5 and rollout["decided_at_share"].value == 0.1
    assert rollout["canary_roc_auc"].value >= rollout["champion_roc_auc"].value - 0.01  # the default tolerance
    # The period as scored at 10% says nothing about the 50% step: it decides again once scored again.
    _, held, check = _score(names=("rollout",))
    assert held["decision"].value == "held" and "scored before the canary served 50%" in held["why"].value
    assert check.passed

    _, rollout, _ = _score()
    half = _served(three_periods, canary)
    assert tenth < half and 0.48 < len(half) / 28_834 < 0.52  # the same rows stay in, others join
    assert rollout["decision"].value == "completed" and rollout["rollout"].value == "none"
    with _registry() as con:
        champion = registry.champion(con, MODEL)
    assert (champion.version, champion.previous_version, champion.reason) == (canary, first, "drift")
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey(["flights", "champion_model"]))
    assert latest.asset_materialization.metadata["champion_version"].value == canary
    assert main(["rollout", "--dataset", "flights"]) == 0
    events = [line.split()[2] for line in capsys.readouterr().out.splitlines()[2:]]
    assert events == ["completed", "stepped_up", "started"]
    predictions, *_ = _score()
    assert predictions["model_version"].value == canary and predictions["canary_rows"].value == 0


def test_the_rollout_command_says_when_there_is_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert main(["rollout", "--dataset", "flights"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "flights_delay rollout: none",
        "no rollout yet: a model promoted after the first starts one",
    ]
    assert main(["rollout", "--dataset", "flights", "--abort"]) == 1
    assert "mlplatform rollout: flights_delay has no rollout under way" in capsys.readouterr().err
