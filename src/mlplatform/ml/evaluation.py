"""Evaluating a model's probabilities on a held-out period: overall, per group, against a baseline, as a card."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from mlplatform.markdown import markdown_table
from mlplatform.ml.metrics import log_loss, roc_auc

CALIBRATION_BINS = 10


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve, as average precision over the positive rows."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = labels[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.mean()) if hits.any() else 0.0


def calibration(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> pl.DataFrame:
    """Mean predicted against observed positive rate in equal-width probability bins (``rows`` in each)."""
    frame = pl.DataFrame({"score": np.asarray(scores, dtype=np.float64), "label": np.asarray(labels, dtype=np.float64)})
    return (
        frame.with_columns((pl.col("score") * bins).floor().clip(0, bins - 1).cast(pl.Int32).alias("bin"))
        .group_by("bin")
        .agg(
            pl.len().alias("rows"),
            pl.col("score").mean().alias("predicted"),
            pl.col("label").mean().alias("observed"),
        )
        .sort("bin")
    )


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    bins = calibration(labels, scores)
    weights = bins["rows"] / bins["rows"].sum()
    return float((weights * (bins["predicted"] - bins["observed"]).abs()).sum())


def summary(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": average_precision(labels, scores),
        "log_loss": log_loss(labels, scores),
        "brier": float(np.mean((scores - np.asarray(labels, dtype=np.float64)) ** 2)),
        "calibration_error": expected_calibration_error(labels, scores),
    }


def by_group(frame: pl.DataFrame, labels: np.ndarray, scores: np.ndarray, column: str) -> pl.DataFrame:
    """ROC AUC and positive rate per value of ``column``; groups with one class only get no AUC."""
    data = frame.select(column).with_columns(pl.Series("label", labels), pl.Series("score", scores))
    rows = []
    for (value,), group in data.group_by(column, maintain_order=True):
        group_labels, group_scores = group["label"].to_numpy(), group["score"].to_numpy()
        both = 0 < group_labels.sum() < len(group_labels)
        rows.append(
            {
                column: value,
                "rows": group.height,
                "positive_rate": float(group_labels.mean()),
                "roc_auc": roc_auc(group_labels, group_scores) if both else None,
            }
        )
    return pl.DataFrame(rows).sort("rows", descending=True)


def baseline_scores(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Each row's first non-null baseline column (a dataset declares them: historical rates, computed point in
    time), falling back to the last column's mean, then 0.5."""
    fallback = frame[columns[-1]].cast(pl.Float64).mean()
    rate = pl.coalesce(*[pl.col(column) for column in columns], pl.lit(fallback if fallback is not None else 0.5))
    return frame.select(rate.cast(pl.Float64)).to_series().to_numpy()


def model_card(
    title: str,
    description: str,
    model_version: str,
    target_period: str,
    metrics: dict[str, dict[str, float]],
    groups: dict[str, pl.DataFrame],
    manifest: dict[str, Any],
) -> str:
    """A markdown model card: what the model is, what it was trained on, how it did and against what."""
    table = pl.DataFrame([{"scored by": who, **values} for who, values in metrics.items()])
    table = table.with_columns(pl.selectors.float().round(4))
    sections = [
        f"# {title} {model_version}",
        f"{description} Trained on {manifest.get('window', 'the training window')}, evaluated on the held-out "
        f"period {target_period}.",
        f"- training data version (md5): `{manifest.get('training_data_version')}`\n"
        f"- code version: `{manifest.get('code_version')}`\n- libraries: {manifest.get('libraries')}",
        "## Held-out metrics\n\n" + markdown_table(table),
    ]
    for column, per_group in groups.items():
        top = per_group.head(10).with_columns(pl.selectors.float().round(4))
        sections.append(f"## By {column} (largest 10)\n\n" + markdown_table(top))
    return "\n\n".join(sections) + "\n"


def promotion_gate(
    roc_auc: float, baseline_roc_auc: float, min_roc_auc: float, champion_roc_auc: float | None, tolerance: float
) -> tuple[bool, str]:
    """Whether a challenger may be promoted, and why: at least the minimum AUC, above the baseline, and not
    worse than the champion on the same rows by more than ``tolerance`` (no champion: that part passes)."""
    failures = []
    if roc_auc < min_roc_auc:
        failures.append(f"ROC AUC {roc_auc:.4f} below the minimum {min_roc_auc:.4f}")
    if roc_auc <= baseline_roc_auc:
        failures.append(f"ROC AUC {roc_auc:.4f} not above the baseline {baseline_roc_auc:.4f}")
    if champion_roc_auc is not None and roc_auc < champion_roc_auc - tolerance:
        failures.append(
            f"ROC AUC {roc_auc:.4f} worse than the champion's {champion_roc_auc:.4f} by more than {tolerance:.4f}"
        )
    if failures:
        return False, "; ".join(failures)
    against = f", champion {champion_roc_auc:.4f} (tolerance {tolerance:.4f})" if champion_roc_auc is not None else ""
    return True, f"ROC AUC {roc_auc:.4f}: minimum {min_roc_auc:.4f}, baseline {baseline_roc_auc:.4f}{against}"
