"""The length-grouped sampler: a pure function of (seed, epoch), grouping similar lengths."""

from __future__ import annotations

import random

from tuneforge.training.sampler import SeededLengthGroupedSampler


def test_same_epoch_same_order_other_epoch_differs() -> None:
    lengths = [random.Random(0).randint(3, 60) for _ in range(500)]
    a = SeededLengthGroupedSampler(lengths, batch_size=8, seed=1)
    b = SeededLengthGroupedSampler(lengths, batch_size=8, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    first = list(a)
    assert first == list(b)
    assert sorted(first) == list(range(500))  # a permutation: every example exactly once
    b.set_epoch(3)
    assert list(b) != first


def test_batches_have_less_padding_than_random() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(3, 100) for _ in range(2000)]
    order = list(SeededLengthGroupedSampler(lengths, batch_size=16, seed=0))

    def padded(idx: list[int]) -> int:
        return sum(max(lengths[i] for i in idx[k:k + 16]) * len(idx[k:k + 16]) for k in range(0, len(idx), 16))

    shuffled = list(range(2000))
    rng.shuffle(shuffled)
    assert padded(order) < 0.7 * padded(shuffled)
