"""Classification metrics for predicted probabilities, computed with numpy and polars (no scikit-learn)."""

from __future__ import annotations

import numpy as np
import polars as pl

_EPSILON = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive row scores above a random negative one."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")
    ranks = pl.Series(scores).rank(method="average").to_numpy()  # ties share their rank
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    probabilities = np.clip(np.asarray(scores, dtype=np.float64), _EPSILON, 1 - _EPSILON)
    labels = np.asarray(labels).astype(np.float64)
    return float(-np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)))


def paired_bootstrap_auc(
    labels: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """ROC AUC of both models on the same rows and a percentile confidence interval on the difference
    (challenger minus champion). Each resample reweights rows (Poisson bootstrap: a weight drawn from
    Poisson(1) per row, the large-sample equivalent of drawing with replacement) and scores both models on
    the same draw, so the interval reflects the models' difference, not the month's sampling noise twice."""
    labels = np.asarray(labels).astype(np.float64)
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, resamples, _RESAMPLES_PER_CHUNK):
        chunk = min(_RESAMPLES_PER_CHUNK, resamples - start)
        weights = rng.poisson(1.0, size=(chunk, len(labels))).astype(np.float64)
        differences.append(
            _weighted_auc(labels, challenger_scores, weights) - _weighted_auc(labels, champion_scores, weights)
        )
    spread = np.concatenate(differences)
    tail = (1 - level) / 2
    champion, challenger = roc_auc(labels, champion_scores), roc_auc(labels, challenger_scores)
    return {
        "champion_roc_auc": champion,
        "challenger_roc_auc": challenger,
        "difference": challenger - champion,
        "ci_low": float(np.quantile(spread, tail)),
        "ci_high": float(np.quantile(spread, 1 - tail)),
        "share_challenger_better": float((spread > 0).mean()),
        "resamples": resamples,
    }


_RESAMPLES_PER_CHUNK = 50


def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC under each row of ``weights`` (resample counts per row), ties counted as half."""
    order = np.argsort(np.asarray(scores), kind="stable")
    sorted_scores, sorted_labels, sorted_weights = np.asarray(scores)[order], labels[order], weights[:, order]
    tie_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    positives = np.add.reduceat(sorted_weights * sorted_labels, tie_starts, axis=1)
    negatives = np.add.reduceat(sorted_weights * (1 - sorted_labels), tie_starts, axis=1)
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    return (positives * (negatives_below + 0.5 * negatives)).sum(axis=1) / (
        positives.sum(axis=1) * negatives.sum(axis=1)
    )
