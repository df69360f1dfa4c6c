"""The evaluation gate a retrained model must pass before it may become the champion.

Both models answer the same examples, so every comparison is paired (evaluation/stats.py's approximate
randomisation test: swap the two models' answers on a random subset of examples; p is how often the metric
difference is at least as large as observed):

- old test set (the frozen original test split): the candidate may not be worse than the champion by more than
  `max_regression` with the drop significant at `alpha` ("no significant regression beyond a threshold");
- new test split (the new data's): the candidate must beat the champion by more than `min_gain`, significantly
  at `alpha` (unless `require_gain` is off, e.g. a retrain only meant to keep up).

The decision, its reasons and the table are written to the candidate's run folder as gate.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError
from tuneforge.evaluation.stats import bootstrap_ci, metric_fn, paired_permutation_test
from tuneforge.registry.files import write_json

OLD, NEW = "old_test", "new_test"


class GateError(TuneforgeError):
    """The gate cannot be applied (bad thresholds, mismatched predictions)."""


@dataclass(frozen=True)
class GateThresholds:
    metric: str = "accuracy"  # accuracy | macro_f1 | weighted_f1
    max_regression: float = 0.01  # largest drop on the old test set tolerated even when significant
    min_gain: float = 0.0  # the gain on the new test split must exceed this
    alpha: float = 0.05
    require_gain: bool = True
    # significance: a drop beyond max_regression fails only when the paired test finds it significant (the issue's
    # rule; lenient on small test sets). non_inferiority: the lower end of the paired bootstrap interval of
    # (candidate - champion) must stay above -max_regression (strict: an underpowered test set fails).
    regression_test: str = "significance"
    permutations: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in ("accuracy", "macro_f1", "weighted_f1"):
            raise GateError(f"the gate cannot use metric {self.metric!r}", fix="use accuracy, macro_f1 or weighted_f1")
        if not 0 < self.alpha < 1:
            raise GateError(f"alpha must be between 0 and 1, got {self.alpha}", fix="e.g. --alpha 0.05")
        if self.regression_test not in ("significance", "non_inferiority"):
            raise GateError(f"unknown regression test {self.regression_test!r}",
                            fix="use significance or non_inferiority")
        if self.max_regression < 0:
            raise GateError(f"max_regression must be >= 0, got {self.max_regression}", fix="e.g. 0.01")


@dataclass(frozen=True)
class PairedPredictions:
    """One evaluation set answered by both models: reference labels and each model's predicted labels."""

    references: list[str]
    champion: list[str]
    candidate: list[str]

    def __post_init__(self) -> None:
        if not (len(self.references) == len(self.champion) == len(self.candidate)):
            raise GateError("references and both models' predictions must have one entry per example")


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    table: list[dict[str, Any]]  # one row per evaluation set
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "table": self.table, "thresholds": self.thresholds}

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / "gate.json"
        write_json(path, self.to_dict())
        return path


def compare_set(name: str, pair: PairedPredictions, t: GateThresholds) -> dict[str, Any]:
    """Champion and candidate on one set: scores with 95% CIs, their difference and its paired p-value."""
    index = {lab: i for i, lab in enumerate(sorted({*pair.references, *pair.champion, *pair.candidate}))}
    refs, a, b = (np.array([index[x] for x in xs], dtype=np.int64)
                  for xs in (pair.references, pair.candidate, pair.champion))
    fn = metric_fn(t.metric)
    test = paired_permutation_test(refs, a, b, fn, t.permutations, t.seed)
    ci_a, ci_b = bootstrap_ci(refs, a, fn, seed=t.seed), bootstrap_ci(refs, b, fn, seed=t.seed)
    return {"set": name, "examples": len(refs), "metric": t.metric,
            "champion": round(ci_b.point, 4), "champion_ci": [round(ci_b.low, 4), round(ci_b.high, 4)],
            "candidate": round(ci_a.point, 4), "candidate_ci": [round(ci_a.low, 4), round(ci_a.high, 4)],
            "difference": round(test.difference, 4), "p_value": round(test.p_value, 4),
            "difference_low": round(paired_lower_bound(refs, a, b, fn, t.alpha, t.seed), 4)}


def paired_lower_bound(refs: np.ndarray, a: np.ndarray, b: np.ndarray, fn: Any, alpha: float, seed: int,
                       samples: int = 1000) -> float:
    """One-sided (1 - alpha) lower bound of fn(a) - fn(b), resampling the same examples for both models."""
    if len(refs) < 2:
        return fn(refs, a) - fn(refs, b)
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for i in range(samples):
        idx = rng.integers(0, len(refs), len(refs))
        diffs[i] = fn(refs[idx], a[idx]) - fn(refs[idx], b[idx])
    return float(min(np.quantile(diffs, alpha), fn(refs, a) - fn(refs, b)))


def decide(sets: dict[str, PairedPredictions], thresholds: GateThresholds | None = None) -> GateDecision:
    """The gate over `old_test` (no significant regression beyond the threshold) and `new_test` (a significant
    gain); other sets (e.g. the champion's own recent test split) are reported but do not decide."""
    t = thresholds or GateThresholds()
    if OLD not in sets or NEW not in sets:
        raise GateError(f"the gate needs the {OLD} and {NEW} sets, got {', '.join(sets) or 'none'}")
    table = [compare_set(name, pair, t) for name, pair in sets.items() if pair.references]
    rows = {r["set"]: r for r in table}
    reasons, passed = [], True
    old = rows.get(OLD)
    if old is None:
        passed, reasons = False, [f"{OLD}: empty, so forgetting cannot be measured"]
    else:
        ok, why = _no_regression(old, t)
        passed = passed and ok
        reasons.append(f"{OLD}: {t.metric} {old['champion']:.4f} -> {old['candidate']:.4f} "
                       f"({old['difference']:+.4f}), {why}")
    new = rows.get(NEW)
    if new is None:
        passed = passed and not t.require_gain
        reasons.append(f"{NEW}: empty, so no gain can be shown")
    else:
        gain, p = new["difference"], new["p_value"]
        shown = gain > t.min_gain and p < t.alpha
        verdict = (f"a significant gain (p={p:.4f} < {t.alpha})" if shown else
                   f"no significant gain above {t.min_gain} (p={p:.4f})")
        reasons.append(f"{NEW}: {t.metric} {new['champion']:.4f} -> {new['candidate']:.4f} ({gain:+.4f}), {verdict}"
                       + ("" if t.require_gain else " (not required)"))
        if t.require_gain and not shown:
            passed = False
    return GateDecision(passed, reasons, table, asdict(t))


def _no_regression(row: dict[str, Any], t: GateThresholds) -> tuple[bool, str]:
    """Whether the old test set shows no regression beyond the threshold, and why, in words."""
    drop, p = -row["difference"], row["p_value"]
    if t.regression_test == "non_inferiority":
        low = row["difference_low"]
        if low < -t.max_regression:
            return False, (f"not shown non-inferior: the {1 - t.alpha:.0%} lower bound of the difference is "
                           f"{low:+.4f}, below -{t.max_regression}")
        return True, f"non-inferior: the {1 - t.alpha:.0%} lower bound {low:+.4f} is above -{t.max_regression}"
    if drop > t.max_regression and p < t.alpha:
        return False, f"a significant regression (p={p:.4f} < {t.alpha}) beyond the {t.max_regression} allowed"
    if drop > t.max_regression:
        return True, (f"a drop beyond the {t.max_regression} allowed but not significant (p={p:.4f} >= {t.alpha}; "
                      "--regression-test non_inferiority refuses such drops)")
    return True, f"within the {t.max_regression} regression allowed"
