"""Knowledge distillation loss: the student matches the teacher's softened next-token distributions.

loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy on the hard labels, over trained
(answer) positions only. T^2 keeps the soft term's gradient scale independent of the temperature (Hinton et al.).
TRL's DistillationTrainer is on-policy (the student generates, the teacher scores) and has no hard-label mix, so this
offline form is tuneforge's own; on-policy distillation can come in as a second algorithm later.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float, num_items: torch.Tensor | int | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixed loss, soft KL term, hard cross-entropy) for next-token logits of shape (batch, seq, vocab): sums over
    trained positions divided by `num_items` (those of the whole accumulated batch, as transformers' causal-LM loss
    does under gradient accumulation) or, without it, per-token means over this batch."""
    vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])  # padded embedding rows carry no tokens
    mask = labels[:, 1:] != -100
    student = student_logits[:, :-1, :vocab][mask].float()
    teacher = teacher_logits[:, :-1, :vocab][mask].float()
    if student.numel() == 0:
        zero = student_logits.sum() * 0.0
        return zero, zero, zero
    count = num_items if num_items is not None else mask.sum()
    hard = torch.nn.functional.cross_entropy(student, labels[:, 1:][mask], reduction="sum") / count
    log_s = torch.log_softmax(student / temperature, dim=-1)
    log_t = torch.log_softmax(teacher / temperature, dim=-1)
    soft = (log_t.exp() * (log_t - log_s)).sum() / count * temperature ** 2
    return alpha * soft + (1 - alpha) * hard, soft, hard


class DistillationTrainer(Trainer):
    """transformers' Trainer whose loss is `distillation_loss` against a frozen teacher (tuneforge's mixin is added
    by `trainer_class`)."""

    def __init__(self, *args: Any, teacher: Any = None, temperature: float = 2.0, alpha: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**features)
        with torch.no_grad():
            teacher_logits = self.teacher(**features).logits
        # Given num_items_in_batch (transformers counts the trained tokens of the whole accumulated batch for a causal
        # student), the loss is already scaled for accumulation; the mixin tells training_step so.
        loss, _, _ = distillation_loss(outputs.logits, teacher_logits, labels, self.temperature, self.alpha,
                                       num_items_in_batch)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # the count spans all devices; DDP averages gradients
        return (loss, outputs) if return_outputs else loss
