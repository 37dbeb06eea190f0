"""The NumPy metrics against values worked out by hand (and their edge cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ferrotune.training.metrics import (
    accuracy,
    compute_metrics,
    f1,
    is_better,
    matthews_correlation,
    pearson,
    rank,
    spearman,
)


def test_accuracy_and_f1_of_a_small_confusion():
    labels = np.array([1, 1, 1, 0, 0, 1])
    predictions = np.array([1, 0, 1, 1, 0, 1])
    # tp=3 fp=1 fn=1 tn=1: precision 3/4, recall 3/4
    assert accuracy(predictions, labels) == pytest.approx(4 / 6)
    assert f1(predictions, labels) == pytest.approx(0.75)


def test_f1_without_true_positive_is_zero():
    assert f1(np.array([0, 0]), np.array([1, 0])) == 0.0


def test_matthews_binary_matches_the_textbook_formula():
    labels = np.array([1, 1, 1, 0, 0, 1, 0, 0])
    predictions = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_correlation(predictions, labels) == pytest.approx(expected)


def test_matthews_is_zero_for_a_constant_prediction_and_one_when_perfect():
    labels = np.array([0, 1, 2, 1])
    assert matthews_correlation(np.zeros(4, dtype=int), labels) == 0.0
    assert matthews_correlation(labels, labels) == pytest.approx(1.0)


def test_pearson_and_spearman():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    # A monotonic but non-linear relation: Spearman 1, Pearson below 1.
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert pearson(x, np.exp(x)) < 0.95


def test_rank_averages_ties():
    assert rank(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_compute_metrics_takes_argmax_of_logits_and_flattens_scores():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0]])
    labels = np.array([0, 1, 0])
    assert compute_metrics(("accuracy",), logits, labels) == {"accuracy": pytest.approx(2 / 3)}
    scores = np.array([[0.5], [1.5], [2.5]])
    assert compute_metrics(("pearson",), scores, np.array([1.0, 2.0, 3.0]))["pearson"] == pytest.approx(1.0)


def test_loss_is_better_when_lower_and_metrics_when_higher():
    assert is_better("loss", 0.4, 0.5) and not is_better("loss", 0.6, 0.5)
    assert is_better("f1", 0.9, 0.8) and not is_better("accuracy", 0.7, 0.8)
    assert is_better("f1", 0.1, None)
