"""The FAISS retrieval index: exact below 50k vectors, IVF above, persisted with its payload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.evaluation.retrieval import EXACT_LIMIT, VectorIndex, knn_vote


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_index_matches_brute_force_and_round_trips(tmp_path: Path) -> None:
    vecs, queries = _unit(500, 16, 0), _unit(20, 16, 1)
    index = VectorIndex.build(vecs, [{"text": f"t{i}", "label": str(i % 3)} for i in range(500)])
    assert index.kind.startswith("flat")
    scores, ids = index.search(queries, 5)
    expected = np.argsort(-(queries @ vecs.T), axis=1)[:, :5]
    assert (ids == expected).all()
    assert np.allclose(scores, np.take_along_axis(queries @ vecs.T, expected, 1), atol=1e-5)
    loaded = VectorIndex.load(index.save(tmp_path / "index"))
    assert loaded.size == 500 and loaded.payload[7]["text"] == "t7"
    assert (loaded.search(queries, 5)[1] == ids).all()


def test_large_index_switches_to_ivf_with_high_recall() -> None:
    vecs = _unit(EXACT_LIMIT + 2000, 8, 2)
    index = VectorIndex.build(vecs, [{}] * len(vecs), seed=0)
    assert index.kind.startswith("ivf")
    probe = vecs[::5000]  # stored vectors: each must find itself first
    _, ids = index.search(probe, 1)
    assert (ids[:, 0] == np.arange(0, len(vecs), 5000)).mean() >= 0.9


def test_damaged_payload_is_a_clear_error(tmp_path: Path) -> None:
    index = VectorIndex.build(_unit(10, 4, 3), [{"text": str(i)} for i in range(10)])
    folder = index.save(tmp_path / "index")
    (folder / "payload.json").write_text('{"kind": "flat", "size": 3, "items": [{}, {}, {}]}')
    with pytest.raises(TuneforgeError, match="holds 10 vectors but the payload 3"):
        VectorIndex.load(folder)


def test_knn_vote_weights_neighbours_by_similarity() -> None:
    scores = np.array([[0.9, 0.5, 0.4]])
    ids = np.array([[0, 1, 2]])
    votes = knn_vote(scores, ids, np.array([1, 0, 0]), 2)
    assert votes.sum() == pytest.approx(1.0)
    assert votes[0, 0] > votes[0, 1]  # two weaker neighbours outvote one strong one (0.9 < 0.5 + 0.4)
    votes = knn_vote(np.array([[0.9, 0.3, 0.4]]), ids, np.array([1, 0, 0]), 2)
    assert votes[0, 1] > votes[0, 0]
