"""Retrieval metrics of the embedding task, on rankings worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneforge.evaluation.ranking import per_query_scores, read_reference_pairs, reference_spearman, summarise, top_k


def test_one_relevant_item_ranked_second() -> None:
    scores = per_query_scores(np.array([[4, 7, 1, 0, 2]]), [{7}])
    assert scores["recall_at_1"][0] == 0 and scores["recall_at_5"][0] == 1 and scores["recall_at_10"][0] == 1
    assert scores["mrr_at_10"][0] == 0.5
    assert scores["ndcg_at_10"][0] == pytest.approx(1 / math.log2(3))


def test_many_relevant_items_recall_is_capped_by_k() -> None:
    # 20 relevant items, the top 10 holds relevant ones at ranks 1 and 3: recall@1 = 1/1, recall@5 = 2/5.
    ranked = np.array([[0, 50, 1, 51, 52, 53, 54, 55, 56, 57]])
    scores = per_query_scores(ranked, [set(range(20))])
    assert scores["recall_at_1"][0] == 1 and scores["recall_at_5"][0] == pytest.approx(0.4)
    ideal = sum(1 / math.log2(i + 2) for i in range(10))
    assert scores["ndcg_at_10"][0] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_no_relevant_item_found_scores_zero() -> None:
    scores = per_query_scores(np.array([[1, 2, 3]]), [{9}])
    assert all(values[0] == 0 for values in scores.values())


def test_top_k_orders_by_similarity_and_excludes_the_query_itself() -> None:
    vecs = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]  # items 0 and 1 identical
    vecs[1] = vecs[1] * 0.9 + np.array([0, 0.1, 0, 0], np.float32)
    ranked = top_k(vecs, vecs, 2, exclude=np.arange(4))
    assert ranked[0][0] == 1 and 0 not in ranked[0]  # its near twin first, never itself
    assert all(i not in row for i, row in enumerate(ranked))


def test_summary_interval_brackets_the_mean() -> None:
    means, cis = summarise({"ndcg_at_10": np.array([0.0, 1.0, 0.5, 1.0, 0.25, 0.75])})
    assert means["ndcg_at_10"] == pytest.approx(0.5833, abs=1e-4)
    assert cis["ndcg_at_10"]["low"] < means["ndcg_at_10"] < cis["ndcg_at_10"]["high"]


def test_reference_pairs_ship_with_graded_judgements() -> None:
    pairs = read_reference_pairs()
    assert 60 <= len(pairs) <= 100
    assert {type(p["score"]) for p in pairs} == {float} and min(p["score"] for p in pairs) < 1 < 4 < max(
        p["score"] for p in pairs)
    # a perfect model's cosine follows the judgements exactly
    angles = np.array([p["score"] for p in pairs]) / 5 * (np.pi / 2)
    first = np.tile([1.0, 0.0], (len(pairs), 1))
    second = np.stack([np.cos(np.pi / 2 - angles), np.sin(np.pi / 2 - angles)], axis=1)
    assert reference_spearman(first, second, [p["score"] for p in pairs]) == pytest.approx(1.0)
