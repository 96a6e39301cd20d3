"""Classification metrics for delay probabilities, computed with numpy and polars (no scikit-learn)."""

from __future__ import annotations

import numpy as np
import polars as pl

_EPSILON = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random delayed flight scores above a random on-time one."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs both delayed and on-time flights")
    ranks = pl.Series(scores).rank(method="average").to_numpy()  # ties share their rank
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    probabilities = np.clip(np.asarray(scores, dtype=np.float64), _EPSILON, 1 - _EPSILON)
    labels = np.asarray(labels).astype(np.float64)
    return float(-np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)))
