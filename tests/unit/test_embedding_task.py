"""The embedding task's pieces that need no training: records, training rows, the loss it builds, config checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tuneforge.config import ColumnsConfig
from tuneforge.errors import ConfigError
from tuneforge.tasks.base import RecordError
from tuneforge.tasks.embedding import Embedding, EmbeddingParams


def task(**params: object) -> Embedding:
    return Embedding(EmbeddingParams(**params))


def test_pairs_read_the_configured_columns_and_an_optional_negative() -> None:
    t = task(anchor_column="q", positive_column="d", negative_column="n")
    assert t.parse({"q": "a", "d": "b"}, ColumnsConfig(), None) == {"anchor": "a", "positive": "b"}
    assert t.parse({"q": "a", "d": "b", "n": "c"}, ColumnsConfig(), None)["negative"] == "c"
    with pytest.raises(RecordError, match="missing column 'd'") as err:
        t.parse({"q": "a"}, ColumnsConfig(), None)
    assert "task.positive_column" in (err.value.fix or "")
    with pytest.raises(RecordError, match="empty anchor"):
        t.parse({"q": " ", "d": "b"}, ColumnsConfig(), None)


def test_labelled_texts_pair_within_a_label_and_skip_a_label_seen_once() -> None:
    t = task(data="labels")
    examples = [{"anchor": f"text {i}", "label": lab} for i, lab in enumerate("aabbbc")]
    rows = t.training_rows(examples)
    assert len(rows) == 5  # 'c' has no partner
    label_of = {e["anchor"]: e["label"] for e in examples}
    assert all(label_of[r["anchor"]] == label_of[r["positive"]] and r["anchor"] != r["positive"] for r in rows)
    assert t.training_rows(examples) == rows  # seeded: the same pairs every run


def _seeded(seed: int) -> Embedding:
    t = task(data="labels")
    t.check_config(SimpleNamespace(method=SimpleNamespace(name="full"), data=SimpleNamespace(max_length=64),
                                   training=SimpleNamespace(seed=seed)))
    return t


def test_labelled_pairs_are_drawn_with_the_training_seed() -> None:
    examples = [{"anchor": f"text {i}", "label": "ab"[i % 2]} for i in range(40)]
    first, again, other = (_seeded(s).training_rows(examples) for s in (1, 1, 2))
    assert first == again
    assert [r["positive"] for r in first] != [r["positive"] for r in other]
    assert [r["anchor"] for r in first] == [r["anchor"] for r in other]  # every text is still an anchor once


def test_labelled_rows_carry_anchor_and_negative_label_ids_for_the_sampler() -> None:
    examples = [{"anchor": "a1", "label": "a", "negative": "b1"}, {"anchor": "a2", "label": "a", "negative": "b1"},
                {"anchor": "b1", "label": "b", "negative": "a2"}, {"anchor": "b2", "label": "b", "negative": "a1"}]
    rows = task(data="labels").training_rows(examples)
    assert [r["label"] for r in rows] == [[0, 1], [0, 1], [1, 0], [1, 0]]
    assert all("label" not in r for r in task(data="labels", distinct_label_batches=False).training_rows(examples))
    without = task(data="labels").training_rows([{k: v for k, v in e.items() if k != "negative"} for e in examples])
    assert [r["label"] for r in without] == [[0, -1], [0, -1], [1, -1], [1, -1]]


def test_negatives_are_used_only_when_every_row_has_one() -> None:
    t = task()
    some = [{"anchor": "a", "positive": "b", "negative": "c"}, {"anchor": "d", "positive": "e"}]
    assert all(set(r) == {"anchor", "positive"} for r in t.training_rows(some))
    every = [{"anchor": "a", "positive": "b", "negative": "c"}]
    assert set(t.training_rows(every)[0]) == {"anchor", "positive", "negative"}


def test_loss_is_cached_mnrl_inside_matryoshka_when_asked(tiny_bert: Path) -> None:
    from sentence_transformers.sentence_transformer import losses

    t = task(loss="cached_mnrl", mini_batch_size=4, matryoshka_dims=[8, 32, 16])
    model = t.build_model(str(tiny_bert), [])
    spec = t.trainer_spec(None)
    loss = spec.init_extra["loss"](model)
    assert isinstance(loss, losses.MatryoshkaLoss) and tuple(loss.matryoshka_dims) == (32, 16, 8)
    assert isinstance(loss.loss, losses.CachedMultipleNegativesRankingLoss) and loss.loss.mini_batch_size == 4
    from sentence_transformers.base.sampler import BatchSamplers

    assert spec.args_extra["batch_sampler"] == BatchSamplers.NO_DUPLICATES
    plain = task().trainer_spec(None).init_extra["loss"](model)
    assert isinstance(plain, losses.MultipleNegativesRankingLoss)


def test_methods_that_cannot_save_a_sentence_transformer_are_refused() -> None:
    cfg = SimpleNamespace(method=SimpleNamespace(name="prompt_tuning"), data=SimpleNamespace(max_length=64),
                          training=SimpleNamespace(seed=3))
    with pytest.raises(ConfigError, match="prompt_tuning"):
        task().check_config(cfg)
    cfg.method.name = "lora"
    t = task()
    t.check_config(cfg)
    assert t.max_length == 64 and t.seed == 3
