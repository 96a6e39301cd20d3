"""The replay on real periods: the real sensors and automation drive a drift-triggered retrain."""

import json

import pytest

from mlplatform.cli import main
from mlplatform.replay import PeriodRow, PolicyResult, markdown_report, replay, report, write_report

SMALL_MODEL = {"hidden": [32], "max_epochs": 3, "batch_size": 256, "learning_rate": 0.003}


@pytest.mark.integration
def test_a_drifted_month_triggers_a_retrain_that_is_promoted(tmp_path, flights):
    lines = []
    [drift] = replay(
        flights,
        tmp_path,
        ["2013-01", "2013-02", "2013-03", "2013-04", "2013-05"],
        policies=("drift",),
        initial_periods=2,
        training_overrides=SMALL_MODEL,
        progress=lines.append,
    )
    by_month = {row.period: row for row in drift.periods}
    assert [row.rows for row in drift.periods] == [27_004, 24_951, 28_834, 28_330, 28_796]
    assert by_month["2013-02"].champion_version is None  # no model before the third month
    first = by_month["2013-03"].champion_version
    assert first and by_month["2013-04"].champion_version == first
    # Weather and historical rates move with the season: April drifts against January and February.
    assert by_month["2013-04"].drifted_share >= 0.5 and "temp" in by_month["2013-04"].drifted_features
    # Beside it, the same drift weighed by what the champion relies on (its permutation importance).
    assert 0 <= by_month["2013-04"].auc_at_risk < 0.5
    # The drift policy decides on that figure: April's weather shift puts more than retrain_cost at risk.
    assert by_month["2013-04"].auc_at_risk > flights.declaration.monitoring.retrain_cost
    assert by_month["2013-04"].retrain.startswith("drift: drift puts") and "promoted" in by_month["2013-04"].retrain
    assert by_month["2013-05"].champion_version not in (None, first)  # May is scored by the retrained model
    assert drift.scored_from == "2013-04" and [row.period for row in drift.scored] == ["2013-04", "2013-05"]
    assert 0.6 < drift.mean_roc_auc < 0.9 and drift.retrains == 1
    assert len(lines) == 5 and lines[3].startswith("drift    2013-04")

    written = json.loads(write_report(flights, [drift], tmp_path / "reports" / "replay.json").read_text())
    assert written["dataset"] == "flights" and written["grain"] == "monthly"
    assert written["policies"][0]["retrains"] == 1 and len(written["policies"][0]["periods"]) == 5


def test_the_report_compares_the_drift_policy_with_the_others(flights):
    def policy(name, aucs, retrains):
        rows = [
            PeriodRow(f"2013-0{i + 4}", 1, "v", auc, retrain="r" if i < retrains else "") for i, auc in enumerate(aucs)
        ]
        return PolicyResult(name, rows, scored_from="2013-04", index=flights.periods.index)

    results = [
        policy("never", [0.70, 0.68], 0),
        policy("periodic", [0.72, 0.72], 2),
        policy("drift", [0.72, 0.71], 1),
        policy("share", [0.71, 0.69], 2),
    ]
    comparison = report(flights, results)["comparison"]
    assert comparison["periodic_gain_over_frozen"] == pytest.approx(0.03)
    assert comparison["drift_share_of_periodic_gain"] == pytest.approx(0.025 / 0.03)
    assert comparison["drift_retrains_per_periodic_retrain"] == 0.5
    # The old share-of-drifted-features policy, side by side: a third of the gain for as many retrains.
    assert comparison["share_share_of_periodic_gain"] == pytest.approx(0.01 / 0.03)
    assert comparison["share_retrains_per_periodic_retrain"] == 1.0
    markdown = markdown_report(flights, results)
    assert "| periodic | 0.72 | 2 |" in markdown and "### Policy `share`" in markdown
    assert "on the drift signal gains +0.0250 (83% of the periodic gain) with 50% of its retrains" in markdown
    assert "on the share of drifted features gains +0.0100 (33% of the periodic gain)" in markdown
    # Without a frozen and a periodic run there is nothing to compare with.
    assert "comparison" not in report(flights, results[2:])


def test_the_command_refuses_unknown_policies(capsys):
    assert main(["replay", "--policies", "sometimes", "--partitions", "2013-01..2013-03"]) == 2
    assert "unknown policies ['sometimes']" in capsys.readouterr().err


def test_the_command_refuses_an_unknown_dataset(capsys):
    assert main(["replay", "--dataset", "nope"]) == 1
    assert "no dataset named 'nope'" in capsys.readouterr().err
