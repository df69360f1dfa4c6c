"""Length-grouped batches that are reproducible per epoch, so a resumed run sees exactly the same batches.

transformers' LengthGroupedSampler draws its permutation from the global RNG when an epoch's iterator is created;
after a resume that RNG is restored to mid-epoch state, so the epoch would be reshuffled. Here the permutation is a
pure function of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class SeededLengthGroupedSampler(Sampler[int]):
    def __init__(self, lengths: list[int], batch_size: int, seed: int, mega_factor: int = 50) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.mega = batch_size * mega_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        # Shuffle, cut into mega-batches, sort each by length: batches of similar length, still random overall.
        megas = [sorted(order[i:i + self.mega], key=lambda j: -self.lengths[j])
                 for i in range(0, len(order), self.mega)]
        batches = [m[i:i + self.batch_size] for m in megas for i in range(0, len(m), self.batch_size)]
        # Keep the longest batch first (surfaces out-of-memory at step 1), shuffle the rest.
        if len(batches) > 1:
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[j] for j in batches[b]))
            batches[0], batches[longest] = batches[longest], batches[0]
            rest = torch.randperm(len(batches) - 1, generator=g).tolist()
            batches = [batches[0]] + [batches[1 + r] for r in rest]
        return iter([i for b in batches for i in b])
