"""Curation: the served inputs most worth a label (low confidence, far from the reference, disagreeing), diverse
by k-means over their embeddings; and merging the labelled file back as a new, fingerprinted dataset version.

Why k-means: the most uncertain inputs are often near-duplicates (one new phrasing sent many times); one pick per
cluster spends the labelling budget on different kinds of input."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.monitoring.log_reader import Served
from tuneforge.monitoring.reference import Reference

POOL_FACTOR = 4  # candidates clustered per pick: wide enough for diversity, narrow enough to stay informative
MARGIN = 0.1  # top-two probabilities closer than this: the model is torn (a disagreement within the model)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share the rank), so scores on different scales add fairly."""
    from scipy.stats import rankdata

    if len(values) < 2:
        return np.zeros(len(values))
    return (rankdata(values) - 1) / (len(values) - 1)


def _margin(row: Served) -> float | None:
    top = sorted((row.extra.get("top") or {}).values(), reverse=True)
    return top[0] - top[1] if len(top) >= 2 else None


def score_candidates(rows: list[Served], emb: np.ndarray, ref: Reference) -> tuple[np.ndarray, list[list[str]]]:
    """Priority per row (higher: label first) and the reasons it was picked."""
    conf = np.asarray([r.score if r.score is not None else 0.5 for r in rows], dtype=float)
    # embeddings are L2-normalised: 1 - nearest cosine; rounded so float noise does not order equal inputs
    novelty = np.round(1.0 - (emb @ ref.embeddings.T).max(1), 5)
    priority = (_ranks(1 - conf) + _ranks(novelty)) / 2
    cut_conf, cut_novel = np.quantile(conf, 0.25), np.quantile(novelty, 0.75)
    reasons: list[list[str]] = []
    for i, row in enumerate(rows):
        why = []
        if conf[i] <= cut_conf:
            why.append("low_confidence")
        if novelty[i] >= cut_novel:
            why.append("drifted")
        margin = _margin(row)
        if (row.feedback_label is not None and row.label is not None and row.feedback_label != row.label) or \
                (margin is not None and margin < MARGIN):
            why.append("disagreeing")
            priority[i] += 1.0  # a known or near-certain mistake outranks mere uncertainty
        reasons.append(why)
    return priority, reasons


def pick(rows: list[Served], emb: np.ndarray, ref: Reference, count: int, seed: int = 0) -> list[dict[str, Any]]:
    from sklearn.cluster import KMeans

    seen: dict[str, int] = {}
    for i, r in enumerate(rows):  # one row per distinct text (the first time it was served)
        seen.setdefault(r.text, i)
    keep = sorted(seen.values())
    rows, emb = [rows[i] for i in keep], emb[keep]
    priority, reasons = score_candidates(rows, emb, ref)
    pool = np.argsort(-priority, kind="stable")[: max(count, POOL_FACTOR * count)]
    k = min(count, len(pool))
    clusters = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(emb[pool]) if k > 1 else np.zeros(
        len(pool), dtype=int)
    best: dict[int, int] = {}
    for idx, c in zip(pool, clusters, strict=True):
        if int(c) not in best or priority[idx] > priority[best[int(c)]]:
            best[int(c)] = int(idx)
    chosen = sorted(best.items(), key=lambda kv: -priority[kv[1]])
    return [{"text": rows[i].text, "label": rows[i].feedback_label, "predicted": rows[i].label,
             "confidence": rows[i].score, "reasons": reasons[i] or ["diverse"],
             "priority": round(float(priority[i]), 4),
             "cluster": c, "request_id": rows[i].response_id, "index": rows[i].index,
             "time": dt.datetime.fromtimestamp(rows[i].time, dt.UTC).isoformat()} for c, i in chosen]


def write_export(picked: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> Path:
    """out.jsonl (fill in `label`, leave it null to skip a row) and out.jsonl.meta.json (where the rows came
    from: request log, model, period), which `tuneforge data merge-labels` records as lineage."""
    from tuneforge.registry.files import write_json, write_text

    write_text(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in picked))
    write_json(Path(f"{out}.meta.json"), {**meta, "rows": len(picked), "sha256": file_sha256(out)})
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
