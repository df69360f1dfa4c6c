"""Entity-level NER scoring (seqeval semantics) and classification metrics."""

from __future__ import annotations

import pytest

from tuneforge.evaluation.metrics import classification_metrics, entity_metrics, entity_spans


def test_entity_spans_iob2() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-ORG"]
    assert entity_spans(tags) == {("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6), ("ORG", 6, 7)}


def test_partial_span_is_a_miss() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # person truncated: wrong span
    metrics, per_type = entity_metrics(true, pred)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(0.5)
    assert per_type["LOC"]["f1"] == 1.0 and per_type["PER"]["f1"] == 0.0
    assert metrics["token_accuracy"] == pytest.approx(0.75)


def test_wrong_type_counts_against_both() -> None:
    metrics, _ = entity_metrics([["B-PER"]], [["B-ORG"]])
    assert metrics["f1"] == 0.0


def test_classification_metrics_macro_vs_accuracy() -> None:
    metrics, per_class = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], ["a", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)
    assert per_class["b"]["recall"] == 0.0 and per_class["a"]["support"] == 3
