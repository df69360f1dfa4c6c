"""Forgetting mitigations applied inside the trainer: KL-to-base penalty and a lower backbone learning rate."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

# Task heads are new too (classification heads and reward scores); methods declare their own additions.
HEAD_MARKERS = ("classifier", "score")


def new_parameter_markers() -> tuple[str, ...]:
    """Substrings naming parameters that a method or a task head adds (they keep the full learning rate)."""
    from tuneforge.methods import METHODS

    return HEAD_MARKERS + tuple(m for cls in METHODS for m in cls.new_parameter_markers)


class BaseModelReference:
    """Base-model logits for the KL penalty: PEFT models switch their adapters off; others keep a frozen copy."""

    def __init__(self, model: Any) -> None:
        self.copy = None
        if not hasattr(model, "disable_adapter"):
            self.copy = copy.deepcopy(model).eval()
            for p in self.copy.parameters():
                p.requires_grad_(False)

    @contextlib.contextmanager
    def _base(self, model: Any) -> Iterator[Any]:
        if self.copy is not None:
            yield self.copy
        else:
            with model.disable_adapter():
                yield model

    @torch.no_grad()
    def logits(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        with self._base(model) as base:
            was_training = base.training
            base.eval()
            out = base(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            base.train(was_training)
        return out


def kl_to_base(logits: torch.Tensor, base_logits: torch.Tensor, labels: torch.Tensor,
               num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """KL(tuned || base) of the next-token distributions summed over trained positions (labels != -100), divided by
    `num_items` (the trained positions of the whole accumulated batch, as the model's own loss is) or, without it,
    by this batch's count (the mean)."""
    mask = labels[:, 1:] != -100
    tuned = torch.log_softmax(logits[:, :-1].float(), dim=-1)[mask]
    base = torch.log_softmax(base_logits[:, :-1].float(), dim=-1)[mask]
    if tuned.numel() == 0:
        return logits.sum() * 0.0
    total = (tuned.exp() * (tuned - base)).sum()
    return total / (num_items if num_items is not None else mask.sum())


def parameter_groups(model: Any, weight_decay: float, backbone_scale: float, lr: float) -> list[dict[str, Any]]:
    """AdamW groups: new parameters at `lr`, pretrained backbone parameters at `lr * backbone_scale`;
    no weight decay on biases and norms (as transformers' default grouping)."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    markers = new_parameter_markers()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        new = any(marker in name for marker in markers)
        decay = param.ndim >= 2 and "norm" not in name.lower()
        groups.setdefault((new, decay), []).append(param)
    return [{"params": params, "lr": lr if new else lr * backbone_scale, "weight_decay": weight_decay if decay else 0.0}
            for (new, decay), params in groups.items()]
