"""Confidence intervals and the paired significance test behind `tuneforge compare`."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tuneforge.evaluation.stats import (
    accuracy,
    bootstrap_ci,
    entity_f1,
    macro_f1,
    mean_value,
    paired_permutation_test,
    weighted_f1,
)


def _system(refs: np.ndarray, correct_rate: float, n_labels: int, rng: np.random.Generator) -> np.ndarray:
    """Predictions that are right with probability `correct_rate`, else a wrong label."""
    right = rng.random(len(refs)) < correct_rate
    wrong = (refs + rng.integers(1, n_labels, len(refs))) % n_labels
    return np.where(right, refs, wrong)


def test_fast_f1_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 7, 500)
    preds = _system(refs, 0.6, 7, rng)
    preds[:5] = 9  # a label never in the references
    assert macro_f1(refs, preds) == pytest.approx(f1_score(refs, preds, average="macro"))
    assert weighted_f1(refs, preds) == pytest.approx(f1_score(refs, preds, average="weighted"))


@pytest.mark.parametrize("fn", [accuracy, macro_f1])
def test_interval_contains_point_and_shrinks_with_more_data(fn) -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 400, 1600):
        refs = rng.integers(0, 5, n)
        preds = _system(refs, 0.7, 5, rng)
        ci = bootstrap_ci(refs, preds, fn, samples=500, seed=3)
        assert ci.point == pytest.approx(fn(refs, preds))
        assert ci.low <= ci.point <= ci.high
        assert ci.low < ci.high
        widths.append(ci.width)
    # Standard error falls as 1/sqrt(n): four times the data, about half the width.
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.7 * widths[0] / 2 + 0.02


def test_interval_of_a_mean_covers_the_true_value_most_of_the_time() -> None:
    rng = np.random.default_rng(2)
    hits = 0
    for trial in range(40):
        values = rng.normal(3.0, 1.0, 200)
        hits += bootstrap_ci(np.zeros(200), values, mean_value, samples=300, seed=trial).contains(3.0)
    assert hits >= 33  # nominal 95%: 38 of 40 expected; a broken interval covers far less


def test_paired_test_detects_a_planted_difference() -> None:
    rng = np.random.default_rng(4)
    refs = rng.integers(0, 10, 600)
    better, worse = _system(refs, 0.80, 10, rng), _system(refs, 0.65, 10, rng)
    result = paired_permutation_test(refs, better, worse, accuracy, permutations=1000, seed=0)
    assert result.difference == pytest.approx(accuracy(refs, better) - accuracy(refs, worse))
    assert result.difference > 0.1
    assert result.p_value < 0.01 and result.significant()


def test_paired_test_does_not_flag_a_null_difference() -> None:
    rng = np.random.default_rng(5)
    false_alarms = 0
    p_values = []
    for seed in range(20):
        refs = rng.integers(0, 10, 400)
        a, b = _system(refs, 0.7, 10, rng), _system(refs, 0.7, 10, rng)  # same quality, different errors
        test = paired_permutation_test(refs, a, b, macro_f1, permutations=400, seed=seed)
        false_alarms += test.significant(0.05)
        p_values.append(test.p_value)
    assert false_alarms <= 3  # alpha 0.05 over 20 tries: 1 expected
    assert np.median(p_values) > 0.2


def test_identical_systems_have_p_value_one() -> None:
    refs = np.arange(50) % 3
    result = paired_permutation_test(refs, refs.copy(), refs.copy(), accuracy, permutations=100)
    assert result.p_value == 1.0 and result.difference == 0.0


def test_sentence_level_resampling_for_entity_f1() -> None:
    """Rows of (tp, predicted, gold) per sentence: the CI and the paired test resample whole sentences."""
    rng = np.random.default_rng(6)
    gold = rng.integers(1, 4, 300)
    good = np.stack([np.minimum(gold, rng.binomial(gold, 0.85)), gold, gold], axis=1)
    bad = np.stack([np.minimum(gold, rng.binomial(gold, 0.55)), gold, gold], axis=1)
    refs = np.zeros(len(gold))
    assert entity_f1(refs, good) == pytest.approx(good[:, 0].sum() / gold.sum())
    ci = bootstrap_ci(refs, good, entity_f1, samples=300)
    assert ci.low < ci.point < ci.high
    assert paired_permutation_test(refs, good, bad, entity_f1, permutations=300).p_value < 0.01
    assert paired_permutation_test(refs, good, good.copy(), entity_f1, permutations=50).p_value == 1.0
