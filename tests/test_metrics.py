import numpy as np
import pytest

from mlplatform.ml.metrics import _weighted_auc, log_loss, paired_bootstrap_auc, roc_auc


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


def test_weighted_auc_with_unit_weights_is_the_auc_and_ties_count_half():
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.random(500) + labels * 0.3, 1)  # many ties
    assert _weighted_auc(labels.astype(float), scores, np.ones((1, 500)))[0] == pytest.approx(roc_auc(labels, scores))
    doubled = np.r_[labels, labels], np.r_[scores, scores]
    weights = np.r_[np.full(500, 2.0), np.zeros(500)][None, :]  # weight 2 on one copy is the same sample
    assert _weighted_auc(doubled[0].astype(float), doubled[1], weights)[0] == pytest.approx(roc_auc(labels, scores))


def test_paired_bootstrap_separates_a_better_model_and_not_an_equal_one():
    rng = np.random.default_rng(4)
    labels = rng.random(4000) < 0.25
    weak = labels * 0.4 + rng.random(4000)
    strong = labels * 0.8 + rng.random(4000)
    better = paired_bootstrap_auc(labels, weak, strong, resamples=200)
    assert better["difference"] == pytest.approx(roc_auc(labels, strong) - roc_auc(labels, weak))
    assert 0 < better["ci_low"] < better["difference"] < better["ci_high"]
    assert better["share_challenger_better"] == 1.0
    same = paired_bootstrap_auc(labels, weak, weak, resamples=200)
    assert same["ci_low"] == same["ci_high"] == 0.0  # paired: identical models differ on no resample
    assert paired_bootstrap_auc(labels, weak, strong, resamples=200, seed=9) == paired_bootstrap_auc(
        labels, weak, strong, resamples=200, seed=9
    )
