"""Monitoring's statistics, verdict rule and curation, on seeded synthetic data (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.monitoring.drift import DriftCheck, categorical_test, holm, mmd_test, proportion_drop_test
from tuneforge.monitoring.verdict import alarms


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mmd_rejects_a_shift_and_not_the_same_distribution() -> None:
    rng = np.random.default_rng(0)
    ref = _unit(rng.normal(size=(200, 16)))
    same = [mmd_test(ref, _unit(rng.normal(size=(60, 16))), permutations=300, seed=s).p_value for s in range(5)]
    shifted = _unit(rng.normal(size=(60, 16)) + np.r_[1.0, np.zeros(15)])
    assert min(same) > 0.01
    assert mmd_test(ref, shifted, permutations=300).p_value < 0.01


def test_categorical_test_flags_a_new_label_mix() -> None:
    ref = {"a": 100, "b": 100, "c": 100}
    assert categorical_test("l", ref, {"a": 20, "b": 21, "c": 19}).p_value > 0.3
    assert categorical_test("l", ref, {"a": 55, "b": 3, "c": 2}).p_value < 1e-6


def test_live_accuracy_drop_is_one_sided() -> None:
    assert proportion_drop_test("acc", 30, 60, 0.9).p_value < 1e-6
    assert proportion_drop_test("acc", 60, 60, 0.9).p_value > 0.5  # better than reference is no alarm


def test_holm_adjusts_as_specified() -> None:
    tests = holm([DriftCheck(n, 0, p, "") for n, p in (("a", 0.01), ("b", 0.04), ("c", 0.03))])
    assert [round(t.p_adjusted, 6) for t in tests] == [0.03, 0.06, 0.06]


def test_persistence_rule_needs_consecutive_drifted_windows() -> None:
    w = [{"status": s} for s in ["ok", "drift", "ok", "drift", "drift", "drift", "insufficient", "drift", "drift"]]
    assert alarms(w, 2) == [4, 8]
    assert alarms(w, 3) == [5]


def test_export_picks_low_confidence_rows_one_per_cluster() -> None:
    from tuneforge.monitoring.curate import pick
    from tuneforge.monitoring.log_reader import Served
    from tuneforge.monitoring.reference import Reference

    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(4, 8))) * 5
    emb = _unit(np.concatenate([c + rng.normal(scale=0.1, size=(10, 8)) for c in centres]))
    conf = np.full(40, 0.95)
    low = [3, 14, 25, 36]  # one uncertain input in each cluster
    conf[low] = [0.2, 0.25, 0.3, 0.35]
    rows = [Served(float(i), f"id-{i}", 0, f"text {i}", {"label": "a", "score": float(conf[i])}) for i in range(40)]
    # every input is in the reference (novelty 0 for all), so confidence alone decides within a cluster
    ref = Reference([], [], [], set(), emb, np.zeros(40), np.zeros(40), [], [])
    picked = pick(rows, emb.astype(np.float32), ref, count=4)
    assert sorted(p["request_id"] for p in picked) == sorted(f"id-{i}" for i in low)
    assert len({p["cluster"] for p in picked}) == 4
    assert all("low_confidence" in p["reasons"] for p in picked)


@pytest.mark.parametrize("text", ["7", "x1d", "-3d", ""])
def test_durations_are_checked(text: str) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.monitoring.watch import parse_duration

    with pytest.raises(TuneforgeError, match="--since"):
        parse_duration(text, "--since")
    assert parse_duration("36h", "--since") == 36 * 3600


def test_verdict_levels_and_exit_codes() -> None:
    from tuneforge.monitoring.monitor import MonitorSettings
    from tuneforge.monitoring.verdict import decide

    def window(i: int, status: str) -> dict:
        tests = [{"name": "confidence", "p_value": 1e-5, "p_adjusted": 6e-5, "detail": "mean 0.4 vs 0.9"}]
        return {"start": i * 86400.0, "end": (i + 1) * 86400.0, "requests": 50, "status": status,
                "rejected": ["confidence"] if status == "drift" else [], "tests": tests if status == "drift" else []}

    settings = MonitorSettings()
    cases = {("ok", "ok", "ok"): ("ok", 0), ("ok", "drift", "ok"): ("warn", 3), ("ok", "drift", "drift"): ("drift", 4),
             ("drift", "insufficient", "drift"): ("warn", 3)}
    for statuses, (status, code) in cases.items():
        verdict = decide("m", "log", [window(i, s) for i, s in enumerate(statuses)], settings, ["t.jsonl"], 30)
        assert (verdict["status"], verdict["exit_code"]) == (status, code), statuses
        if status != "ok":
            assert any("confidence p=1e-05" in r for r in verdict["reasons"])
    assert decide("m", "log", [window(0, "drift"), window(1, "drift")], settings, [], 30)["alarms"] == [
        "1970-01-03T00:00Z"]


@pytest.mark.slow  # importing Evidently alone takes ~20 s
def test_evidently_cross_check_reports_column_drift(tmp_path) -> None:
    from tuneforge.monitoring.evidently_check import evidently_check, evidently_status

    usable, why = evidently_status()
    if not usable:
        pytest.skip(f"evidently does not import here ({why[:120]}); pip install 'tuneforge[monitor]'")
    from tuneforge.monitoring.log_reader import Served
    from tuneforge.monitoring.reference import Reference

    class View:
        def lengths(self, texts: list[str]) -> np.ndarray:
            return np.asarray([len(t.split()) for t in texts], dtype=float)

    rng = np.random.default_rng(0)
    ref_texts = [" ".join(["word"] * int(n)) for n in rng.integers(3, 8, 200)]
    preds = [{"label": "a" if i % 2 else "b", "score": float(s)} for i, s in enumerate(rng.uniform(0.8, 1, 200))]
    ref = Reference([], ref_texts, [], {"word"}, np.zeros((200, 2)), View().lengths(ref_texts), np.zeros(200),
                    preds, [])
    rows = [Served(0.0, None, 0, " ".join(["new"] * 20), {"label": "a", "score": 0.3}) for _ in range(60)]
    found = evidently_check(View(), ref, rows, tmp_path)
    assert found["available"] and (tmp_path / "evidently.html").is_file()
    assert found["columns"]["token_length"]["value"] < 0.05 and found["columns"]["confidence"]["value"] < 0.05


def test_prediction_drift_for_ner_and_generation_outputs() -> None:
    from tuneforge.monitoring.log_reader import Served
    from tuneforge.monitoring.reference import Reference
    from tuneforge.monitoring.window_tests import prediction_tests

    def ents(*types: str) -> dict:
        return {"entities": [{"type": t, "text": "x", "start": 0, "end": 1} for t in types]}

    ref_preds = [ents("PER"), ents("LOC"), ents()] * 40
    ref = Reference([], [], [], set(), np.zeros((1, 1)), np.zeros(1), np.zeros(1), ref_preds, [])
    same = [Served(0, None, 0, "t", p) for p in [ents("PER"), ents("LOC"), ents()] * 15]
    moved = [Served(0, None, 0, "t", ents("ORG", "ORG")) for _ in range(45)]
    (same_test,), summary = prediction_tests(ref, same)
    assert summary["output_kind"] == "entities" and same_test.name == "entity_types" and same_test.p_value > 0.5
    assert prediction_tests(ref, moved)[0][0].p_value < 1e-6

    replies = [" ".join(["w"] * n) for n in range(3, 9)] * 20
    gen_ref = Reference([], [], [], set(), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [], replies)
    long_rows = [Served(0, None, 0, "q", " ".join(["w"] * 60), "length", None, 0.5) for _ in range(30)]
    (length_test,), summary = prediction_tests(gen_ref, long_rows)
    assert length_test.name == "reply_length" and length_test.p_value < 1e-6
    assert summary["end_of_turn_rate"] == 0.0 and summary["mean_rating"] == 0.5
