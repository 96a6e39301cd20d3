"""How much a trained model leans on each feature: permutation importance on held-out rows (Breiman 2001;
Fisher, Rudin and Dominici 2019), in the unit the platform judges models in, ROC AUC.

Measured once, when the model is evaluated on its held-out period, and kept with it: the retraining signal
(:func:`mlplatform.monitoring.champion.auc_at_risk`) weighs each feature's drift by it, so a feature the model
ignores can drift without consequence and a shift in the one it relies on counts in full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from mlplatform.ml.metrics import roc_auc

if TYPE_CHECKING:  # PyTorch is imported where a model is loaded or trained, not here
    from mlplatform.ml.model import TabularModel


def permutation_importance(
    model: TabularModel, rows: pl.DataFrame, labels: np.ndarray, features: list[str], repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """For each feature, the ROC AUC the model loses on ``rows`` when that feature's values are shuffled among
    them (its link to the label broken, its distribution kept): the mean over ``repeats`` shuffles, floored at 0
    (a shuffle that helps by chance is noise, not negative importance)."""
    baseline = roc_auc(labels, model.predict(rows))
    generator = np.random.default_rng(seed)
    importance = {}
    for feature in features:
        losses = [
            baseline - roc_auc(labels, model.predict(rows.with_columns(rows[feature].gather(order))))
            for order in (generator.permutation(rows.height) for _ in range(repeats))
        ]
        importance[feature] = max(0.0, float(np.mean(losses)))
    return importance
