"""The labelled-pairs batch sampler: no two pairs of one label in a batch, no pair whose hard negative has another
pair's anchor label, no repeated text; every pair used once an epoch when the labels allow it; seeded."""

from __future__ import annotations

import random

from datasets import Dataset

from tuneforge.tasks._embedding_batches import DistinctLabelBatchSampler


def pairs(n_labels: int, per_label: int, negatives: bool = False, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    rows = []
    for lab in range(n_labels):
        for i in range(per_label):
            row = {"anchor": f"l{lab} t{i}", "positive": f"l{lab} t{(i + 1) % per_label}"}
            neg = rng.choice([x for x in range(n_labels) if x != lab])
            if negatives:
                row["negative"] = f"l{neg} t{rng.randrange(per_label)}"
            row["label"] = [lab, neg if negatives else -1]
            rows.append(row)
    rng.shuffle(rows)
    return Dataset.from_list(rows)


def sampler(data: Dataset, batch_size: int = 8, seed: int = 0, drop_last: bool = False) -> DistinctLabelBatchSampler:
    return DistinctLabelBatchSampler(data, batch_size=batch_size, drop_last=drop_last, seed=seed)


def test_a_batch_never_holds_two_pairs_of_one_label() -> None:
    data = pairs(n_labels=20, per_label=6)
    s = sampler(data)
    batches = list(s)
    assert len(batches) == len(s)
    for batch in batches:
        labels = [data[i]["label"][0] for i in batch]
        assert len(labels) == len(set(labels))
    used = sorted(i for b in batches for i in b)
    assert used == list(range(len(data)))  # balanced labels: every pair once, in full batches
    assert all(len(b) == 8 for b in batches[:-1])


def test_hard_negatives_never_carry_the_label_of_another_anchor_in_the_batch() -> None:
    data = pairs(n_labels=30, per_label=4, negatives=True)
    for batch in sampler(data):
        anchors = {data[i]["label"][0] for i in batch}
        for i in batch:
            assert data[i]["label"][1] not in anchors
        texts = [t for i in batch for t in (data[i]["anchor"], data[i]["positive"], data[i]["negative"])]
        assert len(texts) == len(set(texts))


def test_few_labels_make_small_batches_and_a_lone_label_waits() -> None:
    data = Dataset.from_list([{"anchor": f"a{i}", "positive": f"p{i}", "label": [i % 3 and 1, -1]}
                              for i in range(12)])  # label 0: 4 pairs, label 1: 8 pairs
    batches = list(sampler(data, batch_size=8))
    assert all(len(b) == 2 for b in batches)  # two labels: two pairs a batch
    assert sum(len(b) for b in batches) == 8  # label 1's last 4 pairs have no other label to meet this epoch


def test_batches_are_seeded_and_change_with_the_epoch() -> None:
    data = pairs(n_labels=10, per_label=5)
    first, again, other = sampler(data, seed=1), sampler(data, seed=1), sampler(data, seed=2)
    assert list(first) == list(again) and list(first) != list(other)
    first.set_epoch(1)
    assert list(first) != list(again)
