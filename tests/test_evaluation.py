"""Evaluation metrics and the model card, against hand-computed values."""

import base64
import re

import numpy as np
import polars as pl
import pytest

from mlplatform.evaluation import (
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
    rows = {row["carrier"]: row for row in table.to_dicts()}
    # UA: delayed at 0.9, 0.7 and 0.1 against one on-time flight at 0.8: one pair of three in order.
    assert rows["UA"]["flights"] == 4 and rows["UA"]["roc_auc"] == pytest.approx(1 / 3)
    assert rows["AA"]["roc_auc"] is None  # both AA flights were on time


def test_baseline_falls_back_from_route_to_carrier_to_overall():
    frame = pl.DataFrame(
        {"route_delay_rate": [0.3, None, None], "carrier_delay_rate": [0.2, 0.25, None]},
        schema={"route_delay_rate": pl.Float64, "carrier_delay_rate": pl.Float64},
    )
    assert baseline_scores(frame).tolist() == pytest.approx([0.3, 0.25, 0.225])


def test_model_card_names_the_versions_and_compares_with_the_baseline():
    metrics = {"model": summary(LABELS, SCORES), "baseline": summary(LABELS, SCORES[::-1])}
    groups = {"carrier": by_group(pl.DataFrame({"carrier": ["UA"] * 6}), LABELS, SCORES, "carrier")}
    card = model_card(
        "abc123", "2013-07", metrics, groups, {"training_data_version": "def456", "window": "2013-01..2013-06"}
    )
    assert card.startswith("# Delay model abc123")
    assert "`def456`" in card and "2013-01..2013-06" in card and "| baseline |" in card and "## By carrier" in card


@pytest.mark.parametrize(
    ("auc", "champion", "passed", "reason"),
    [
        (0.70, None, True, "minimum 0.6500, baseline 0.6000"),
        (0.64, None, False, "below the minimum"),
        (0.70, 0.703, True, "champion 0.7030"),  # within the tolerance
        (0.70, 0.72, False, "worse than the champion's 0.7200 by more than 0.0050"),
        (0.59, 0.72, False, "not above the route-rate baseline"),
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
