"""Two-sample tests, each returning a statistic and a p-value, and Holm's correction across a window's tests.

Written here rather than taken from a library because the verdict needs every test's p-value on one scale, so
that one correction (Holm) and one persistence rule control false alarms over many windows x many tests; see
docs/monitoring.md for what Evidently adds on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class DriftCheck:
    name: str  # e.g. "embedding_mmd"
    statistic: float
    p_value: float
    detail: str  # one line a person reads: "MMD² 0.012 (reference 400, window 60)"
    p_adjusted: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "statistic": round(float(self.statistic), 6), "p_value": float(self.p_value),
                "p_adjusted": None if self.p_adjusted is None else float(self.p_adjusted), "detail": self.detail}


def _median_bandwidth(pooled: np.ndarray, rng: np.random.Generator, sample: int = 500) -> float:
    idx = rng.choice(len(pooled), size=min(sample, len(pooled)), replace=False)
    sq = ((pooled[idx, None, :] - pooled[None, idx, :]) ** 2).sum(-1)
    med = float(np.median(sq[np.triu_indices(len(idx), 1)]))
    return med if med > 0 else 1.0


def mmd_test(reference: np.ndarray, window: np.ndarray, permutations: int = 500, seed: int = 0) -> DriftCheck:
    """Gaussian-kernel MMD² (median-heuristic bandwidth) with a permutation p-value.

    All permutations in one matrix product: MMD²_b = wᵀKw with w = +1/n on the reference and -1/m on the window."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([reference, window]).astype(np.float64)
    n, m = len(reference), len(window)
    sq_norms = (pooled ** 2).sum(1)
    sq = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * pooled @ pooled.T, 0.0)
    kernel = np.exp(-sq / _median_bandwidth(pooled, rng))
    weights = np.empty((n + m, permutations + 1))
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    weights[:, 0] = base
    for j in range(1, permutations + 1):
        weights[:, j] = rng.permutation(base)
    values = ((kernel @ weights) * weights).sum(0)
    observed = values[0]
    p = (1 + int((values[1:] >= observed).sum())) / (permutations + 1)
    return DriftCheck("embedding_mmd", observed, p, f"MMD² {observed:.4f} (reference {n}, window {m}, "
                                                    f"{permutations} permutations)")


def ks_test(name: str, reference: np.ndarray, window: np.ndarray, unit: str = "") -> DriftCheck:
    res = stats.ks_2samp(reference, window)
    return DriftCheck(name, float(res.statistic), float(res.pvalue),
                      f"mean {np.mean(window):.3g}{unit} vs {np.mean(reference):.3g}{unit} reference "
                      f"(KS {res.statistic:.3f})")


def rank_test(name: str, reference: np.ndarray, window: np.ndarray) -> DriftCheck:
    """Mann-Whitney U, two-sided: right for many-tied values such as per-text out-of-vocabulary rates."""
    if np.all(reference == reference[0]) and np.all(window == reference[0]):
        return DriftCheck(name, 0.0, 1.0, f"all values {reference[0]:.3g}")
    res = stats.mannwhitneyu(reference, window, alternative="two-sided")
    return DriftCheck(name, float(res.statistic), float(res.pvalue),
                      f"mean {np.mean(window):.3g} vs {np.mean(reference):.3g} reference")


def categorical_test(name: str, reference: dict[str, int], window: dict[str, int]) -> DriftCheck:
    """Chi-squared on the 2 x K table; categories expected fewer than 5 times in the window are pooled into one
    (the chi-squared approximation needs it)."""
    cats = sorted(set(reference) | set(window))
    ref = np.array([reference.get(c, 0) for c in cats], dtype=float)
    win = np.array([window.get(c, 0) for c in cats], dtype=float)
    expected = (ref + win) / (ref.sum() + win.sum()) * win.sum()
    small = expected < 5
    if small.any():
        ref = np.append(ref[~small], ref[small].sum())
        win = np.append(win[~small], win[small].sum())
        keep = (ref + win) > 0
        ref, win = ref[keep], win[keep]
    if len(ref) < 2 or win.sum() == 0:
        return DriftCheck(name, 0.0, 1.0, "too few categories to compare")
    chi2, p, dof, _ = stats.chi2_contingency(np.stack([ref, win]))
    return DriftCheck(name, float(chi2), float(p), f"chi² {chi2:.1f} on {dof} df ({len(cats)} categories)")


def proportion_drop_test(name: str, successes: int, trials: int, reference_rate: float) -> DriftCheck:
    """One-sided exact binomial test: is the window's rate below the reference rate? (live accuracy)"""
    res = stats.binomtest(successes, trials, min(max(reference_rate, 1e-6), 1 - 1e-6), alternative="less")
    ci = res.proportion_ci(confidence_level=0.95, method="wilson")
    low, high = ci.low, ci.high
    return DriftCheck(name, successes / trials, float(res.pvalue),
                      f"{successes / trials:.3f} [{low:.3f}, {high:.3f}] on {trials} labelled vs "
                      f"{reference_rate:.3f} held-out")


def wilson_ci(successes: int, trials: int) -> tuple[float, float]:
    if trials == 0:
        return (0.0, 1.0)
    res = stats.binomtest(successes, trials)
    ci = res.proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def holm(results: list[DriftCheck]) -> list[DriftCheck]:
    """Holm-Bonferroni adjusted p-values (family-wise error across one window's tests), set on each result."""
    order = sorted(range(len(results)), key=lambda i: results[i].p_value)
    running, k = 0.0, len(results)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * results[i].p_value))
        results[i].p_adjusted = running
    return results
