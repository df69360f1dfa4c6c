"""TRL's KTOTrainer reading the training examples in an order drawn from the run's seed."""

from __future__ import annotations

from typing import Any

from trl import KTOTrainer


class SeededKTOTrainer(KTOTrainer):
    """KTO reads its batches in order (sequential sampling: its KL estimate pairs each example with its batch
    neighbours), so the examples are shuffled once, here, with the run's seed: otherwise every seed would train on
    the same order, and desirable/undesirable examples would arrive in the pairs they were written in."""

    def __init__(self, model: Any, *, args: Any, train_dataset: Any = None, **kwargs: Any) -> None:
        if train_dataset is not None:  # datasets' shuffle: a seeded permutation (numpy), the same on every machine
            train_dataset = train_dataset.shuffle(seed=args.seed).flatten_indices()
        super().__init__(model, args=args, train_dataset=train_dataset, **kwargs)
