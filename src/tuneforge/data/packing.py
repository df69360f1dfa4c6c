"""Packing: best-fit-decreasing bins of whole examples, positions restarting at each example.

transformers (5.x) reads packed rows from `position_ids` that restart at 0 and, with no attention mask, builds a
block-diagonal causal mask (masking_utils.find_packed_sequence_indices), so tokens never attend across examples.
"""

from __future__ import annotations

import bisect
from typing import Any

IGNORE = -100


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= capacity; each item goes to the fullest bin it fits in."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), kept sorted
    for i in order:
        need = min(lengths[i], capacity)
        slot = bisect.bisect_left(free, (need, -1))
        if slot < len(free):
            remaining, b = free.pop(slot)
            bins[b].append(i)
            bisect.insort(free, (remaining - need, b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - need, len(bins) - 1))
    return bins


def pack(examples: list[dict[str, list[int]]], capacity: int) -> list[dict[str, list[int]]]:
    """Concatenate examples per bin; position_ids restart per example; no label crosses a boundary."""
    bins = best_fit_decreasing([len(e["input_ids"]) for e in examples], capacity)
    packed = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            ex_ids = examples[i]["input_ids"][:capacity]
            ex_labels = list(examples[i]["labels"][:capacity])
            ex_labels[0] = IGNORE  # the first token is never predicted from the previous example
            ids += ex_ids
            labels += ex_labels
            positions += list(range(len(ex_ids)))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return packed


class PackedCollator:
    """Pads packed rows (pads form their own position run, label -100) and passes no attention mask."""

    def __init__(self, pad_token_id: int, pad_to: int | None = None) -> None:
        self.pad = pad_token_id
        self.pad_to = pad_to  # fixed row width (the fast path's token bucket): static shapes for torch.compile

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(max(len(f["input_ids"]) for f in features), self.pad_to or 0)
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
        for f in features:
            n = width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad] * n)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * n)
            batch["position_ids"].append(list(f["position_ids"]) + list(range(n)))
        return {k: torch.tensor(v) for k, v in batch.items()}
