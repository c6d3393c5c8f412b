import numpy as np
import pytest

from pestid.predictor import softmax
from training.metrics import (
    auroc,
    choose_threshold,
    ece,
    fit_temperature,
    group_accuracy,
    macro_f1,
    nll,
    selective,
    top_k,
)


def test_macro_f1_weighs_classes_equally():
    labels = np.array([0] * 8 + [1] * 2)
    predicted = np.array([0] * 8 + [0, 1])
    # class 0: P=8/9 R=1 F1=16/17; class 1: P=1 R=.5 F1=2/3
    assert macro_f1(labels, predicted, 2) == pytest.approx((16 / 17 + 2 / 3) / 2)


def test_top_k():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert top_k(probs, np.array([1, 0]), 1) == 0.0
    assert top_k(probs, np.array([1, 0]), 2) == 0.5


def test_perfectly_calibrated_predictions_have_near_zero_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    correct = rng.random(20000) < confidence
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(correct, 0, 1)
    assert ece(probs, labels) < 0.02
    assert ece(np.stack([np.ones(100), np.zeros(100)], 1), np.array([0] * 50 + [1] * 50)) == pytest.approx(0.5)


def test_temperature_fixes_overconfident_logits():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 3000)
    logits = rng.normal(0, 1, (3000, 4))
    logits[np.arange(3000), labels] += 1.0
    overconfident = logits * 4
    t = fit_temperature(overconfident, labels)
    assert 3.0 < t < 5.5
    assert nll(overconfident, labels, t) < nll(overconfident, labels, 1.0)


def test_threshold_reaches_target_precision_on_validation():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), labels] += rng.uniform(0, 3, 2000)
    probs = softmax(logits)
    t = choose_threshold(probs, labels, 0.9)
    result = selective(probs, labels, t)
    assert result["accuracy_at_threshold"] >= 0.9
    assert 0 < result["coverage"] < 1


def test_auroc_known_values():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5


def test_group_accuracy_is_one_vote_per_group():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    # group a: both rows say 0 (right); group b: mean says 1, majority label is 0 (tie -> smallest) -> wrong
    assert group_accuracy(probs, labels, ["a", "a", "b", "b"]) == 0.5
