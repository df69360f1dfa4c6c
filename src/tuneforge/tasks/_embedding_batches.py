"""Batches of labelled embedding pairs in which no in-batch negative is a false negative.

With labelled data (task.data: labels) every pair is two texts of one label, and the ranking loss treats every other
pair's texts in the batch as negatives. Two pairs of the same label in one batch would make the loss push apart
texts that are relevant to each other (BANKING77, 77 intents, batch 32: about 6 such pairs a batch). So a batch holds
at most one pair per label, and no pair whose mined hard negative has the label of another pair's anchor (that
negative would be a positive for it). Identical texts are kept apart too, as sentence-transformers' NO_DUPLICATES
sampler does.

The rows carry `label` = [anchor label id, hard-negative label id or -1]; sentence-transformers hands that column
to the loss as labels, which the multiple-negatives ranking losses ignore.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from sentence_transformers.base.sampler import DefaultBatchSampler

LABEL_COLUMN = "label"
TEXT_COLUMNS = ("anchor", "positive", "negative")


class DistinctLabelBatchSampler(DefaultBatchSampler):
    """Each batch takes one pair from each of the labels with the most pairs left (ties broken at random), so the
    labels run out together and the last batches are still full. A label left alone at the end of an epoch has no
    in-batch negatives: its remaining pairs wait for the next epoch's shuffle."""

    def __init__(self, dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: Any = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        groups = dataset[LABEL_COLUMN]
        self.anchor_label = [int(g[0]) for g in groups]
        self.negative_label = [int(g[1]) for g in groups]
        columns = [c for c in TEXT_COLUMNS if c in dataset.column_names]
        self.texts = [frozenset(t) for t in zip(*(dataset[c] for c in columns), strict=True)]
        self._plans: dict[int, list[list[int]]] = {}

    def _fits(self, row: int, anchors: set[int], negatives: set[int], texts: set[str]) -> bool:
        return (self.anchor_label[row] not in anchors and self.anchor_label[row] not in negatives
                and self.negative_label[row] not in anchors and texts.isdisjoint(self.texts[row]))

    def _plan(self, epoch: int) -> list[list[int]]:
        if epoch in self._plans:
            return self._plans[epoch]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        queues: dict[int, list[int]] = {}
        for row in rng.sample(range(len(self.anchor_label)), len(self.anchor_label)):
            queues.setdefault(self.anchor_label[row], []).append(row)
        batches = []
        while True:
            order = sorted((lab for lab in queues if queues[lab]), key=lambda lab: (-len(queues[lab]), rng.random()))
            batch: list[int] = []
            anchors: set[int] = set()
            negatives: set[int] = set()
            texts: set[str] = set()
            for lab in order:
                row = next((r for r in queues[lab] if self._fits(r, anchors, negatives, texts)), None)
                if row is None:
                    continue
                queues[lab].remove(row)
                batch.append(row)
                anchors.add(lab)
                negatives.add(self.negative_label[row])
                texts |= self.texts[row]
                if len(batch) == self.batch_size:
                    break
            if len(batch) < 2 or (self.drop_last and len(batch) < self.batch_size):
                break
            batches.append(batch)
        self._plans = {epoch: batches}  # one epoch at a time: __len__ and __iter__ of that epoch agree
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._plan(self.epoch)

    def __len__(self) -> int:
        return len(self._plan(self.epoch))
