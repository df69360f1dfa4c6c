"""Uncertainty of a test-set score: percentile-bootstrap confidence intervals and a paired permutation test.

Both resample *examples* of one test set, so they work for any metric computed from (references, predictions):
accuracy and macro-F1 over class ids, or the mean of per-example values (answer loss, reward) with dummy references.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def accuracy(refs: np.ndarray, preds: np.ndarray) -> float:
    return float((refs == preds).mean()) if len(refs) else 0.0


def macro_f1(refs: np.ndarray, preds: np.ndarray) -> float:
    """Macro-F1 over the labels present in references or predictions (scikit-learn's default), vectorised:
    a bootstrap calls it a thousand times."""
    if not len(refs):
        return 0.0
    n = int(max(refs.max(), preds.max())) + 1
    tp = np.bincount(refs[refs == preds], minlength=n)
    denom = np.bincount(refs, minlength=n) + np.bincount(preds, minlength=n)
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean())


def weighted_f1(refs: np.ndarray, preds: np.ndarray) -> float:
    if not len(refs):
        return 0.0
    n = int(max(refs.max(), preds.max())) + 1
    tp = np.bincount(refs[refs == preds], minlength=n)
    support = np.bincount(refs, minlength=n)
    denom = support + np.bincount(preds, minlength=n)
    f1 = np.divide(2 * tp, denom, out=np.zeros(n), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def mean_value(refs: np.ndarray, values: np.ndarray) -> float:
    """Per-example scores (answer loss, reward): the metric is their mean; `refs` is ignored."""
    return float(np.mean(values)) if len(values) else 0.0


def entity_f1(refs: np.ndarray, counts: np.ndarray) -> float:
    """Micro entity F1 from per-sentence (true positives, predicted, gold) entity counts, one row per sentence:
    resampling sentences keeps each sentence's entities together, as they are scored."""
    tp, predicted, gold = counts.sum(axis=0) if len(counts) else (0, 0, 0)
    return float(2 * tp / (predicted + gold)) if predicted + gold else 0.0


METRIC_FNS: dict[str, MetricFn] = {"accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": weighted_f1,
                                   "f1": entity_f1,
                                   # retrieval (embedding task): means of per-query values
                                   **dict.fromkeys(("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10",
                                                    "ndcg_at_10"), mean_value)}


LOWER_IS_BETTER_SUFFIXES = ("loss", "perplexity", "kl", "error")


def higher_is_better(metric: str) -> bool:
    """The one rule for a metric's direction (report, compare, trainer, sweep): losses, perplexities, KL
    divergences and error rates improve downwards; every other metric improves upwards."""
    return not metric.removeprefix("eval_").endswith(LOWER_IS_BETTER_SUFFIXES)


def metric_fn(name: str) -> MetricFn:
    """The resampling-friendly version of a task metric; anything else is a mean of per-example values."""
    return METRIC_FNS.get(name, mean_value)


@dataclass(frozen=True)
class Interval:
    point: float
    low: float
    high: float
    confidence: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low


def bootstrap_ci(refs: np.ndarray, preds: np.ndarray, fn: MetricFn, samples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap: resample test examples with replacement, recompute the metric."""
    refs, preds = np.asarray(refs), np.asarray(preds)
    point = fn(refs, preds)
    n = len(preds)
    if n < 2:
        return Interval(point, point, point, confidence)
    rng = np.random.default_rng(seed)
    scores = np.empty(samples)
    for i in range(samples):
        idx = rng.integers(0, n, n)
        scores[i] = fn(refs[idx], preds[idx])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(scores, [alpha, 1 - alpha])
    # The percentile interval of a skewed statistic can exclude the point estimate; widen to include it.
    return Interval(point, float(min(low, point)), float(max(high, point)), confidence)


@dataclass(frozen=True)
class PairedTest:
    difference: float  # metric(a) - metric(b) on the real test set
    p_value: float
    permutations: int

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def paired_permutation_test(refs: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, fn: MetricFn,
                            permutations: int = 2000, seed: int = 0) -> PairedTest:
    """Two-sided approximate-randomisation test on the same examples: under the null hypothesis that the two systems
    are exchangeable, swapping their outputs on a random subset of examples leaves the metric difference unchanged
    in distribution. p = (1 + #|permuted diff| >= |observed diff|) / (1 + permutations)."""
    refs, a, b = np.asarray(refs), np.asarray(preds_a), np.asarray(preds_b)
    observed = fn(refs, a) - fn(refs, b)
    rng = np.random.default_rng(seed)
    differs = (a != b).reshape(len(a), -1).any(axis=1)  # outputs may be rows (e.g. per-sentence counts)
    if not differs.any():
        return PairedTest(0.0, 1.0, permutations)
    hits = 0
    tolerance = 1e-12 + 1e-9 * abs(observed)
    for _ in range(permutations):
        swap = ((rng.random(len(a)) < 0.5) & differs).reshape(-1, *([1] * (a.ndim - 1)))
        pa, pb = np.where(swap, b, a), np.where(swap, a, b)
        if abs(fn(refs, pa) - fn(refs, pb)) >= abs(observed) - tolerance:
            hits += 1
    return PairedTest(float(observed), (hits + 1) / (permutations + 1), permutations)
