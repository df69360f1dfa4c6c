"""Task metrics: classification (scikit-learn) and entity-level NER scores (seqeval-style, IOB2 spans)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> tuple[
        dict[str, float], dict[str, dict[str, float]]]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    metrics = {"accuracy": float(accuracy_score(y_true, y_pred)),
               "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
               "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0))}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    per_class = {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i in ids}
    return metrics, per_class


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> tuple[
        dict[str, float], dict[str, dict[str, float]]]:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    metrics = {"subset_accuracy": float((y_true == y_pred).all(axis=1).mean()),
               "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
               "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    per_class = {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i in range(len(labels))}
    return metrics, per_class


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) spans from IOB2 tags; an I- without a matching open entity starts one (as seqeval)."""
    spans: set[tuple[str, int, int]] = set()
    kind, start = None, 0
    for i, tag in enumerate([*list(tags), "O"]):
        prefix, _, typ = tag.partition("-")
        continues = prefix == "I" and typ == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = typ, i
    return spans


def entity_metrics(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> tuple[
        dict[str, float], dict[str, dict[str, float]]]:
    """Entity-level micro precision/recall/F1 and per-type scores: an entity counts only if type and span match."""
    tp: dict[str, int] = defaultdict(int)
    n_pred: dict[str, int] = defaultdict(int)
    n_true: dict[str, int] = defaultdict(int)
    correct_tokens = total_tokens = 0
    for true, pred in zip(true_seqs, pred_seqs, strict=True):
        ts, ps = entity_spans(true), entity_spans(pred)
        for span in ts:
            n_true[span[0]] += 1
        for span in ps:
            n_pred[span[0]] += 1
        for span in ts & ps:
            tp[span[0]] += 1
        correct_tokens += sum(t == p for t, p in zip(true, pred, strict=True))
        total_tokens += len(true)

    def prf(t: int, p: int, g: int) -> tuple[float, float, float]:
        precision = t / p if p else 0.0
        recall = t / g if g else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    types = sorted(set(n_true) | set(n_pred))
    per_type = {}
    for typ in types:
        p, r, f = prf(tp[typ], n_pred[typ], n_true[typ])
        per_type[typ] = {"precision": p, "recall": r, "f1": f, "support": n_true[typ]}
    p, r, f = prf(sum(tp.values()), sum(n_pred.values()), sum(n_true.values()))
    macro = float(np.mean([v["f1"] for v in per_type.values()])) if per_type else 0.0
    metrics = {"precision": p, "recall": r, "f1": f, "macro_f1": macro,
               "token_accuracy": correct_tokens / total_tokens if total_tokens else 0.0}
    return metrics, per_type
