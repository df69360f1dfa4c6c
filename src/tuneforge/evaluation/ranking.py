"""Retrieval quality of an embedding model: per-query recall@k, MRR@10 and nDCG@10, with bootstrap intervals, and the
general-English reference pairs that show whether fine-tuning made the model forget what similarity means.

Vectors are L2-normalised, so a dot product is the cosine. Relevance is binary. recall@k is the share of the k
slots that relevant items could fill which they do fill, |relevant in top k| / min(k, |relevant|): with one relevant
item per query (pairs) it is the usual recall@k (did the positive make the top k), and with many (labelled data, where
every text of the same label is relevant) it does not cap at |k| / |relevant| the way the plain ratio does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tuneforge.evaluation.stats import bootstrap_ci, mean_value

RECALL_KS = (1, 5, 10)
DEPTH = 10  # MRR and nDCG cut-off
METRICS = (*(f"recall_at_{k}" for k in RECALL_KS), "mrr_at_10", "ndcg_at_10")
REFERENCE_PAIRS = Path(__file__).resolve().parent.parent / "templates" / "reference_sentence_pairs.jsonl"


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, exclude: np.ndarray | None = None,
          chunk: int = 1024) -> np.ndarray:
    """Ids of the k most similar corpus vectors per query, best first. `exclude[i]` is a corpus id query i may not
    retrieve (itself, in leave-one-out retrieval), or -1."""
    k = min(k, len(corpus) - (1 if exclude is not None else 0))
    out = np.zeros((len(queries), max(k, 0)), dtype=np.int64)
    if k <= 0:
        return out
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ corpus.T
        if exclude is not None:
            rows = np.arange(len(scores))
            own = exclude[start:start + chunk]
            scores[rows[own >= 0], own[own >= 0]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def per_query_scores(ranked: np.ndarray, relevant: list[set[int]]) -> dict[str, np.ndarray]:
    """Every metric for every query, from the ranked ids and each query's relevant ids."""
    n = len(relevant)
    scores = {name: np.zeros(n) for name in METRICS}
    discounts = 1.0 / np.log2(np.arange(2, DEPTH + 2))
    for i, (ids, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if not rel:
            continue
        hits = np.array([int(j) in rel for j in ids[:DEPTH]], dtype=float)
        for k in RECALL_KS:
            scores[f"recall_at_{k}"][i] = hits[:k].sum() / min(k, len(rel))
        first = np.flatnonzero(hits)
        scores["mrr_at_10"][i] = 1.0 / (first[0] + 1) if len(first) else 0.0
        ideal = discounts[:min(len(rel), DEPTH)].sum()
        scores["ndcg_at_10"][i] = float((hits * discounts[:len(hits)]).sum() / ideal)
    return scores


def summarise(per_query: dict[str, np.ndarray], seed: int = 0,
              samples: int = 1000) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean of each metric, and its 95% percentile-bootstrap interval over queries."""
    means, intervals = {}, {}
    for name, values in per_query.items():
        ci = bootstrap_ci(np.zeros(len(values)), values, mean_value, samples, 0.95, seed)
        means[name] = ci.point
        intervals[name] = {"low": ci.low, "high": ci.high}
    return means, intervals


def read_reference_pairs(path: Path = REFERENCE_PAIRS) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reference_spearman(first: np.ndarray, second: np.ndarray, judgements: list[float]) -> float:
    """Spearman correlation between the model's cosine similarities and the human similarity judgements."""
    from scipy.stats import spearmanr

    cosine = (first * second).sum(axis=1)
    return float(spearmanr(cosine, judgements).statistic)
