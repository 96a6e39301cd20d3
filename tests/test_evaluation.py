"""Evaluation metrics and the model card, against hand-computed values."""

import base64
import re

import numpy as np
import polars as pl
import pytest

from mlplatform.ml.evaluation import (
    average_precision,
    baseline_scores,
    by_group,
    calibration,
    expected_calibration_error,
    model_card,
    promotion_gate,
    summary,
)
from mlplatform.plots import bar_chart, calibration_chart, training_curve_chart

LABELS = np.array([1, 0, 1, 0, 0, 1])
SCORES = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])


def test_average_precision_by_hand():
    # Hits at ranks 1, 3 and 6: precisions 1, 2/3 and 3/6.
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 2 / 3 + 0.5) / 3)


def test_calibration_bins_and_error():
    bins = calibration(np.array([1, 0, 1, 1]), np.array([0.05, 0.05, 0.95, 0.95]))
    assert bins.columns == ["bin", "rows", "predicted", "observed"]
    assert bins.rows() == [(0, 2, 0.05, 0.5), (9, 2, 0.95, 1.0)]
    assert expected_calibration_error(np.array([1, 0, 1, 1]), np.array([0.05, 0.05, 0.95, 0.95])) == pytest.approx(
        0.5 * 0.45 + 0.5 * 0.05
    )


def test_summary_has_every_metric_and_a_perfect_model_scores_perfectly():
    perfect = summary(np.array([0, 1, 0, 1]), np.array([0.01, 0.99, 0.01, 0.99]))
    assert set(perfect) == {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"}
    assert perfect["roc_auc"] == 1 and perfect["pr_auc"] == 1 and perfect["brier"] == pytest.approx(1e-4)


def test_by_group_leaves_single_class_groups_without_auc():
    frame = pl.DataFrame({"carrier": ["UA", "UA", "UA", "AA", "AA", "UA"]})
    table = by_group(frame, LABELS, SCORES, "carrier")
    assert table.columns == ["carrier", "rows", "positive_rate", "roc_auc"]
    assert table["carrier"].to_list() == ["UA", "AA"]  # the largest group first
    rows = {row["carrier"]: row for row in table.to_dicts()}
    # UA: positives at 0.9, 0.7 and 0.1 against one negative at 0.8: one pair of three in order.
    assert rows["UA"]["rows"] == 4 and rows["UA"]["roc_auc"] == pytest.approx(1 / 3)
    assert rows["UA"]["positive_rate"] == pytest.approx(3 / 4)
    assert rows["AA"]["roc_auc"] is None and rows["AA"]["positive_rate"] == 0  # both AA rows were negative


def test_by_group_works_on_integer_columns():
    """A dataset may group by any column a feature SQL produces, numbers as well as strings."""
    table = by_group(pl.DataFrame({"SEX": [1, 2, 1, 2, 1, 2]}), LABELS, SCORES, "SEX")
    rows = {row["SEX"]: row for row in table.to_dicts()}
    assert rows[1]["rows"] == rows[2]["rows"] == 3
    # SEX 1: positives at 0.9 and 0.7 above the negative at 0.2; SEX 2: the positive at 0.1 below 0.8 and 0.3.
    assert rows[1]["roc_auc"] == 1.0 and rows[2]["roc_auc"] == 0.0


def test_baseline_falls_back_from_route_to_carrier_to_overall():
    frame = pl.DataFrame(
        {"route_delay_rate": [0.3, None, None], "carrier_delay_rate": [0.2, 0.25, None]},
        schema={"route_delay_rate": pl.Float64, "carrier_delay_rate": pl.Float64},
    )
    columns = ["route_delay_rate", "carrier_delay_rate"]
    assert baseline_scores(frame, columns).tolist() == pytest.approx([0.3, 0.25, 0.225])
    # The declared order decides: declared first, the carrier's rate comes first and the route's mean is last.
    assert baseline_scores(frame, columns[::-1]).tolist() == pytest.approx([0.2, 0.25, 0.3])


def test_a_single_baseline_column_falls_back_to_its_mean_then_to_a_half():
    column = "age_schl_employment_rate"
    rates = pl.DataFrame({column: [0.8, None, 0.6]}, schema={column: pl.Float64})
    assert baseline_scores(rates, [column]).tolist() == pytest.approx([0.8, 0.7, 0.6])
    # The first period has no history: every rate is null, so every row scores a half.
    empty = pl.DataFrame({column: [None, None]}, schema={column: pl.Float64})
    assert baseline_scores(empty, [column]).tolist() == [0.5, 0.5]


def test_every_dataset_declares_a_baseline_the_scorer_can_use(dataset):
    """The declared baseline columns score every row of a frame shaped like the dataset's features."""
    columns = dataset.declaration.evaluation.baseline
    frame = pl.DataFrame({column: [0.4, None] for column in columns}, schema=dict.fromkeys(columns, pl.Float64))
    assert baseline_scores(frame, columns).tolist() == pytest.approx([0.4, 0.4])


def test_model_card_names_the_versions_and_compares_with_the_baseline():
    metrics = {"model": summary(LABELS, SCORES), "baseline": summary(LABELS, SCORES[::-1])}
    groups = {"carrier": by_group(pl.DataFrame({"carrier": ["UA"] * 6}), LABELS, SCORES, "carrier")}
    card = model_card(
        "Delay model",
        "Predicts whether a departure is late.",
        "abc123",
        "2013-07",
        metrics,
        groups,
        {"training_data_version": "def456", "window": "2013-01..2013-06"},
    )
    assert card.startswith("# Delay model abc123")
    assert "`def456`" in card and "2013-01..2013-06" in card and "| baseline |" in card and "## By carrier" in card
    assert "Predicts whether a departure is late. Trained on 2013-01..2013-06" in card
    assert "held-out period 2013-07" in card


def test_each_dataset_s_model_card_is_its_own(dataset):
    """The card's title, description and group sections come from the dataset's declaration, not flights'."""
    declared = dataset.declaration
    metrics = {"model": summary(LABELS, SCORES), "baseline": summary(LABELS, SCORES[::-1])}
    groups = {
        column: by_group(pl.DataFrame({column: ["x"] * 6}), LABELS, SCORES, column)
        for column in declared.evaluation.group_by
    }
    card = model_card(
        dataset.model.name, dataset.model.description, "v1.dir", declared.training.target_period, metrics, groups, {}
    )
    assert card.startswith(f"# {dataset.model.name} v1.dir\n")
    assert dataset.model.description in card and f"held-out period {declared.training.target_period}" in card
    assert "Trained on the training window" in card  # no window in the manifest
    assert [line for line in card.splitlines() if line.startswith("## By ")] == [
        f"## By {column} (largest 10)" for column in declared.evaluation.group_by
    ]
    if dataset.name != "flights":
        assert "flight" not in card.lower() and "delay" not in card.lower()


@pytest.mark.parametrize(
    ("auc", "champion", "passed", "reason"),
    [
        (0.70, None, True, "minimum 0.6500, baseline 0.6000"),
        (0.64, None, False, "below the minimum"),
        (0.70, 0.703, True, "champion 0.7030"),  # within the tolerance
        (0.70, 0.72, False, "worse than the champion's 0.7200 by more than 0.0050"),
        (0.59, 0.72, False, "not above the baseline 0.6000"),
    ],
)
def test_the_promotion_gate(auc, champion, passed, reason):
    verdict, why = promotion_gate(auc, 0.60, 0.65, champion, 0.005)
    assert verdict is passed and reason in why


def test_charts_are_markdown_png_images():
    for chart in (
        training_curve_chart([1, 2, 3], [0.6, 0.5, 0.45], [0.55, 0.5, 0.52]),
        calibration_chart([0.1, 0.5], [0.12, 0.4], [100, 10]),
        bar_chart(["dep_hour", "temp"], [0.05, 0.3], "Drift by feature", "Wasserstein (normed)", threshold=0.1),
        bar_chart(["a", "b"], [0.01, 0.9], "p-values", "p", highlighted=[True, False]),
    ):
        alt, data = re.fullmatch(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", chart).groups()
        assert alt and base64.b64decode(data).startswith(b"\x89PNG")
