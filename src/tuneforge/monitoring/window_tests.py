"""The tests run on one window of traffic against the reference: input drift, prediction drift, live quality.

Which prediction tests apply follows what the run answered (a label and score, entity spans, or text), so a new
task that answers in one of these shapes is monitored without a change here."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tuneforge.monitoring.drift import (
    DriftCheck,
    categorical_test,
    ks_test,
    mmd_test,
    proportion_drop_test,
    rank_test,
)
from tuneforge.monitoring.log_reader import Served
from tuneforge.monitoring.reference import Reference, label_counts

MIN_FEEDBACK = 20  # labelled inputs a window needs before live accuracy is tested


def output_kind(outputs: list[Any]) -> str:
    """'label' | 'labels' | 'entities' | 'text' | 'none', from the first output that says."""
    for out in outputs:
        if isinstance(out, str):
            return "text"
        if isinstance(out, dict):
            for kind in ("entities", "labels", "label"):
                if kind in out:
                    return kind
    return "none"


def entity_counts(outputs: list[Any]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for out in outputs:
        ents = (out.get("entities") or []) if isinstance(out, dict) else []
        if ents:
            counts.update(e["type"] for e in ents)
        else:
            counts["(no entity)"] += 1
    return dict(counts)


def reply_words(replies: list[str | None]) -> np.ndarray:
    return np.asarray([len((r or "").split()) for r in replies], dtype=float)


def accuracy_of(ref: Reference) -> float | None:
    pairs = [(p.get("label"), y) for p, y in zip(ref.predictions, ref.labels, strict=False)
             if isinstance(p, dict) and y is not None]
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def input_tests(ref: Reference, emb: np.ndarray, lengths: np.ndarray, oov: np.ndarray, seed: int,
                permutations: int) -> list[DriftCheck]:
    return [mmd_test(ref.embeddings, emb, permutations=permutations, seed=seed),
            ks_test("token_length", ref.lengths, lengths, " tokens"),
            rank_test("oov_rate", ref.oov, oov)]


def prediction_tests(ref: Reference, rows: list[Served]) -> tuple[list[DriftCheck], dict[str, Any]]:
    """Prediction drift and live quality; also returns the window's summary numbers for the report."""
    outputs = [r.output for r in rows]
    kind = output_kind(outputs)
    tests: list[DriftCheck] = []
    summary: dict[str, Any] = {"output_kind": kind}
    if kind == "label":
        ref_conf = np.asarray([p["score"] for p in ref.predictions], dtype=float)
        conf = np.asarray([r.score or 0.0 for r in rows], dtype=float)
        tests.append(categorical_test("predicted_labels", label_counts([p["label"] for p in ref.predictions]),
                                      label_counts([r.label for r in rows])))
        tests.append(ks_test("confidence", ref_conf, conf))
        summary["mean_confidence"] = float(conf.mean())
        labelled = [r for r in rows if r.feedback_label is not None]
        reference_acc = accuracy_of(ref)
        if labelled:
            hits = sum(r.feedback_label == r.label for r in labelled)
            summary["live_accuracy"] = {"correct": hits, "labelled": len(labelled)}
            if len(labelled) >= MIN_FEEDBACK and reference_acc is not None:
                tests.append(proportion_drop_test("live_accuracy", hits, len(labelled), reference_acc))
        summary["reference_accuracy"] = reference_acc
    elif kind == "labels":
        ref_labels = [lab for p in ref.predictions for lab in p.get("labels", [])]
        tests.append(categorical_test("predicted_labels", label_counts(ref_labels),
                                      label_counts([lab for o in outputs for lab in o.get("labels", [])])))
    elif kind == "entities":
        tests.append(categorical_test("entity_types", entity_counts(ref.predictions), entity_counts(outputs)))
    elif kind == "text":
        have = [r for r in ref.replies if r is not None]
        if have:
            tests.append(ks_test("reply_length", reply_words(have), reply_words([str(o) for o in outputs]),
                                 " words"))
        reasons = [r.finish_reason for r in rows if r.finish_reason]
        summary["end_of_turn_rate"] = sum(x == "stop" for x in reasons) / len(reasons) if reasons else None
        ratings = [r.feedback_rating for r in rows if r.feedback_rating is not None]
        summary["mean_rating"] = float(np.mean(ratings)) if ratings else None
    return tests, summary
