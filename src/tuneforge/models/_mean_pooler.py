"""The masked-mean pooler module (torch), swapped in for BERT's [CLS] pooler by models/pooling.py."""

from __future__ import annotations

import torch
from torch import nn


class MaskedMeanPooler(nn.Module):
    """Stands in for BERT's [CLS] pooler: the mean of token states under the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None or mask.shape[:2] != hidden_states.shape[:2]:
            return hidden_states.mean(dim=1)
        weights = mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
