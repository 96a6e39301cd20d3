import numpy as np
import pytest

from mlplatform.metrics import log_loss, roc_auc


def test_roc_auc_counts_correctly_ordered_pairs():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    # 9 (positive, negative) pairs; only (0.35 vs 0.4) is ordered wrongly.
    assert roc_auc(labels, scores) == pytest.approx(8 / 9)


def test_roc_auc_counts_ties_as_half():
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.2])) == pytest.approx(0.75)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_log_loss_matches_its_definition_and_survives_certainty():
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert np.isfinite(log_loss(np.array([1]), np.array([0.0])))
