"""Embedding entrants for `tuneforge compare`: the base encoder against each fine-tuned embedding run, on the
config's test split, each row measured the same way with its own encoder.

- retrieval, what the retriever of a RAG system or a search box does: the task's own test queries and corpus (pairs:
  each distinct anchor against every positive and negative of the split; labelled data: each test text against the
  other test texts, relevant = same label), as the run scored itself. Headline: per-query nDCG@10, with its bootstrap
  CI and the paired test against the base encoder; recall@1/5/10 and MRR@10 each with a CI;
- kNN classification, when the data has labels: each test text takes the similarity-weighted label vote of its
  `compare.rag_k` nearest training texts (FAISS index built with that row's encoder); per-text correctness, so the
  accuracy has a CI too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tuneforge.evaluation.compare_types import CompareInputs, Entrant
from tuneforge.evaluation.resources import PeakMemory, folder_bytes, latencies_ms

HEADLINE = "ndcg_at_10"
SECONDARY = ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")
Encode = Callable[[list[str]], np.ndarray]


def _knn_correct(encode: Encode, inp: CompareInputs, test_vecs: np.ndarray) -> np.ndarray:
    """1 where the vote of the rag_k nearest training texts names the test text's label, else 0."""
    from tuneforge.evaluation.retrieval import VectorIndex, knn_vote

    splits = inp.data.splits
    names = sorted({e["label"] for e in splits["train"]} | {e["label"] for e in splits["test"]})
    index_of = {lab: i for i, lab in enumerate(names)}
    train_y = np.array([index_of[e["label"]] for e in splits["train"]])
    index = VectorIndex.build(encode([e["anchor"] for e in splits["train"]]),
                              [{"label": e["label"]} for e in splits["train"]], seed=inp.cfg.training.seed)
    votes = knn_vote(*index.search(test_vecs, inp.cfg.compare.rag_k), train_y, len(names))
    return (votes.argmax(1) == np.array([index_of[e["label"]] for e in splits["test"]])).astype(float)


def _measure(encode: Encode, inp: CompareInputs) -> tuple[dict[str, np.ndarray], float, list[float]]:
    """Per-query values of every metric, the seconds spent embedding the corpus, and per-query latencies."""
    from tuneforge.evaluation.ranking import DEPTH, per_query_scores, top_k

    task, test = inp.task, inp.data.splits["test"]
    queries, corpus, relevant, leave_one_out = task.retrieval_setup(test)
    q_vecs = encode(queries)
    start = time.perf_counter()
    c_vecs = q_vecs if leave_one_out else encode(corpus)
    corpus_s = time.perf_counter() - start
    ranked = top_k(q_vecs, c_vecs, DEPTH, np.arange(len(queries)) if leave_one_out else None)
    keep = [i for i, rel in enumerate(relevant) if rel]  # a label seen once in the split has nothing to find
    values = per_query_scores(ranked[keep], [relevant[i] for i in keep])
    if task.params.data == "labels" and inp.data.splits["train"]:
        values["knn_accuracy"] = _knn_correct(encode, inp, q_vecs)  # queries are the test texts, in order
    probe = [queries[i] for i in keep][:inp.cfg.compare.latency_examples]
    lat = latencies_ms(lambda q: top_k(encode([q]), c_vecs, DEPTH), probe)
    return values, corpus_s, lat


def _entrant(key: str, name: str, kind: str, values: dict[str, np.ndarray], **costs: Any) -> Entrant:
    secondary = {m: values[m] for m in (*SECONDARY, "knn_accuracy") if m in values}
    return Entrant(key, name, kind, values[HEADLINE], secondary=secondary, **costs)


def embedding_entrants(inp: CompareInputs) -> tuple[np.ndarray, list[Entrant]]:
    cfg, task = inp.cfg, inp.task
    task.check_config(cfg)  # data.max_length for the base encoder, as training used it
    batch = cfg.training.eval_batch_size
    with PeakMemory() as mem:
        base = task.build_model(inp.model_path, [])
        values, corpus_s, lat = _measure(lambda texts: task.embed(base, None, texts, task.max_length, batch), inp)
    entrants = [_entrant("base_encoder", "base encoder (no training)", "baseline", values, train_seconds=corpus_s,
                         latencies_ms=lat, peak_memory_mb=mem.peak_mb, trainable_params=0, artifact_bytes=0,
                         note="training = embedding the corpus")]
    for run in inp.runs:
        with PeakMemory() as mem:
            values, _, lat = _measure(lambda texts, r=run: r.embed(texts, batch), inp)
        info = run.metrics.get("train", {})
        entrants.append(_entrant(f"run:{run.path.name}", f"fine-tuned {run.config.method.name} ({run.path.name})",
                                 "fine_tuned", values, train_seconds=info.get("train_seconds"), latencies_ms=lat,
                                 peak_memory_mb=mem.peak_mb, trainable_params=int(info.get("trainable_params", 0)),
                                 artifact_bytes=folder_bytes(run.path / "model")))
        run.release()  # free the run's model before the next one loads
    return np.zeros(len(entrants[0].outputs)), entrants
