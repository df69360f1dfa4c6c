"""The retrieval index behind RAG and kNN baselines: FAISS over L2-normalised embeddings (inner product = cosine).

Exact search (IndexFlatIP) up to 50k vectors, where it is both exact and fast enough; above that an IVF index
(sqrt(n) lists, 16 probed), trained on the vectors themselves. The index and its payload (the texts and labels each
vector stands for) are saved together, so a comparison's retrieval can be reloaded and inspected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError

EXACT_LIMIT = 50_000


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise TuneforgeError("retrieval baselines need FAISS, which is not installed",
                             fix="pip install faiss-cpu (it is a tuneforge dependency; reinstall tuneforge)") from None
    return faiss


@dataclass
class VectorIndex:
    index: Any
    payload: list[dict[str, Any]]  # one entry per vector: the text and, for labelled data, its label
    kind: str

    @classmethod
    def build(cls, vectors: np.ndarray, payload: list[dict[str, Any]], seed: int = 0) -> VectorIndex:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if n != len(payload):
            raise ValueError(f"{n} vectors but {len(payload)} payload entries")
        if n <= EXACT_LIMIT:
            index, kind = faiss.IndexFlatIP(dim), "flat (exact)"
        else:
            lists = int(np.sqrt(n))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(vectors)
            index.nprobe = 16
            kind = f"ivf ({lists} lists, 16 probed)"
        index.add(vectors)
        return cls(index, payload, kind)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 mean fewer than k hits."""
        if self.size == 0 or k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.size))

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def save(self, folder: Path) -> Path:
        from tuneforge.registry.files import write_json

        faiss = _faiss()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".index.faiss.tmp"
        faiss.write_index(self.index, str(tmp))
        tmp.replace(folder / "index.faiss")
        write_json(folder / "payload.json", {"kind": self.kind, "size": self.size, "items": self.payload})
        return folder

    @classmethod
    def load(cls, folder: Path) -> VectorIndex:
        faiss = _faiss()
        meta = json.loads((folder / "payload.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / "index.faiss"))
        if index.ntotal != len(meta["items"]):
            raise TuneforgeError(f"{folder}: index holds {index.ntotal} vectors but the payload {len(meta['items'])}",
                                 fix="delete the folder; `tuneforge compare` rebuilds it")
        return cls(index, meta["items"], meta["kind"])


def knn_vote(scores: np.ndarray, ids: np.ndarray, labels_of_items: np.ndarray, n_labels: int) -> np.ndarray:
    """Similarity-weighted label distribution of the neighbours, one row per query (rows sum to 1)."""
    votes = np.zeros((len(ids), n_labels), dtype=np.float64)
    for row, (sc, ix) in enumerate(zip(scores, ids, strict=True)):
        valid = ix >= 0
        np.add.at(votes[row], labels_of_items[ix[valid]], np.maximum(sc[valid], 0) + 1e-6)
    return votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
