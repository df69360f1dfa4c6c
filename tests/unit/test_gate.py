"""The evaluation gate's decision on paired predictions, the replay share, and the champion history stack."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from tuneforge.monitoring.gate import GateError, GateThresholds, PairedPredictions, decide
from tuneforge.monitoring.registry_aliases import AliasEvent, champion_stack
from tuneforge.monitoring.retrain import RetrainError, _write_inputs, replay_count

LABELS = ["refund", "track", "cancel"]


def _answers(refs: list[str], right: float, seed: int) -> list[str]:
    """Predictions right on a seeded `right` share of the examples, a wrong label elsewhere."""
    rng = random.Random(seed)
    return [r if rng.random() < right else LABELS[(LABELS.index(r) + 1) % 3] for r in refs]


def _refs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(LABELS) for _ in range(n)]


def test_gate_refuses_a_model_that_forgot_and_passes_one_that_learned() -> None:
    old, new = _refs(200, 1), _refs(100, 2)
    champion_old, champion_new = _answers(old, 0.9, 3), _answers(new, 0.5, 4)
    shuffled = random.Random(5).sample(old, len(old))  # a model trained on shuffled labels: chance answers
    worse = decide({"old_test": PairedPredictions(old, champion_old, shuffled),
                    "new_test": PairedPredictions(new, champion_new, random.Random(6).sample(new, len(new)))})
    assert not worse.passed
    assert any("significant regression" in r for r in worse.reasons)
    assert worse.table[0]["difference"] < -0.3 and worse.table[0]["p_value"] < 0.01
    good = decide({"old_test": PairedPredictions(old, champion_old, champion_old),
                   "new_test": PairedPredictions(new, champion_new, _answers(new, 0.95, 7))})
    assert good.passed, good.reasons
    assert good.table[1]["difference"] > 0.3 and good.table[1]["p_value"] < 0.01


def test_gate_thresholds_decide_small_drops_and_missing_gains(tmp_path: Path) -> None:
    old, new = _refs(200, 1), _refs(100, 2)
    champion = _answers(old, 0.9, 3)
    slightly_worse = list(champion)
    flipped = [i for i, (a, r) in enumerate(zip(champion, old, strict=True)) if a == r][:4]  # 2% fewer right
    for i in flipped:
        slightly_worse[i] = LABELS[(LABELS.index(old[i]) + 1) % 3]
    same_new = PairedPredictions(new, _answers(new, 0.5, 4), _answers(new, 0.5, 4))
    pair = PairedPredictions(old, champion, slightly_worse)
    # a 2% drop on 200 examples is not significant: it passes the regression check, but no gain was shown
    lenient = decide({"old_test": pair, "new_test": same_new}, GateThresholds(require_gain=False))
    assert lenient.passed and "not significant" in lenient.reasons[0]
    strict = decide({"old_test": pair, "new_test": same_new})
    assert not strict.passed and "no significant gain" in strict.reasons[1]
    path = strict.write(tmp_path)
    saved = json.loads(path.read_text())
    assert saved["passed"] is False and saved["thresholds"]["max_regression"] == 0.01 and len(saved["table"]) == 2
    # non-inferiority is stricter: the interval must rule a drop beyond 0.01 out, which 200 examples cannot here
    assert not decide({"old_test": pair, "new_test": same_new},
                      GateThresholds(require_gain=False, regression_test="non_inferiority")).passed
    same = PairedPredictions(old, champion, champion)
    assert decide({"old_test": same, "new_test": same_new},
                  GateThresholds(require_gain=False, regression_test="non_inferiority")).passed
    with pytest.raises(GateError, match="metric"):
        GateThresholds(metric="bleu")
    with pytest.raises(GateError):
        decide({"old_test": pair})


def test_replay_share_and_counts(tmp_path: Path) -> None:
    assert replay_count(700, 10_000, 0.3) == 300  # 300 of 1000 training examples are replayed
    assert replay_count(700, 100, 0.3) == 100  # never more than the original split holds
    assert replay_count(50, 100, 0.0) == 0
    with pytest.raises(RetrainError, match="replay"):
        replay_count(10, 10, 1.0)
    parent_dir = tmp_path / "parent"
    (parent_dir / "data").mkdir(parents=True)
    for split, n in (("train", 200), ("validation", 40)):
        rows = [{"text": f"old {split} {i}", "label": LABELS[i % 3], "_src": f"x:{i}"} for i in range(n)]
        (parent_dir / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    new = SimpleNamespace(splits={s: [{"text": f"new {s} {i}", "label": LABELS[i % 3], "_src": f"n:{i}"}
                                      for i in range(n)] for s, n in (("train", 70), ("validation", 14),
                                                                      ("test", 9))})
    counts = _write_inputs(tmp_path / "in", new, SimpleNamespace(path=parent_dir), 0.3, seed=1)
    assert counts == {"new_train": 70, "replay_train": 30, "new_validation": 14, "replay_validation": 6,
                      "new_test": 9}
    train = [json.loads(x) for x in (tmp_path / "in" / "train.jsonl").read_text().splitlines()]
    assert sum(r["text"].startswith("old") for r in train) == 30 and len(train) == 100
    assert not any("_src" in r for r in train)  # records read back with the default columns
    again = _write_inputs(tmp_path / "in2", new, SimpleNamespace(path=parent_dir), 0.3, seed=1)
    assert again == counts and (tmp_path / "in2" / "train.jsonl").read_text() == \
        (tmp_path / "in" / "train.jsonl").read_text()  # seeded


def _event(alias: str, to: int | None, action: str) -> AliasEvent:
    return AliasEvent(alias, None, to, action, "t", "2026-01-01T00:00:00Z")


def test_champion_stack_walks_back_through_rollbacks() -> None:
    events = [_event("champion", 1, "promote"), _event("challenger", 3, "challenger"),
              _event("champion", 2, "promote"), _event("champion", 3, "promote")]
    assert champion_stack(events) == [1, 2, 3]
    assert champion_stack([*events, _event("champion", 2, "rollback")]) == [1, 2]
    assert champion_stack([*events, _event("champion", 2, "rollback"), _event("champion", 1, "rollback")]) == [1]
