"""Time per epoch: FLOPs of the exact batches an epoch will have, over the hardware's rate at an assumed MFU.

The batches are simulated with the sampler training uses (length-grouped, padded to the longest row of each batch,
longest batch first), so padding is counted as the compute it is. After a dry run, a step-time model fitted to
measured steps (seconds = c + d x padded tokens) replaces the FLOPs model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Model FLOPs utilisation assumed without a measurement: the fraction of the peak a training step achieves.
# GPUs: ~40% of the datasheet bf16 peak is typical for well-fed transformer fine-tuning (Chowdhery et al. 2022
# report 46% for PaLM; HF Trainer runs without packing or fused kernels land at 30-45%). CPU: the peak is the
# matmul rate measured on this machine, of which small per-layer matmuls plus elementwise work reach about half.
MFU = {"cuda": 0.40, "cpu": 0.50}
# Data parallel over N devices: the gradient all-reduce mostly overlaps backward.
SCALING_EFFICIENCY = 0.90
# An AdamW step reads parameter, gradient and two moments and writes three of them back: 7 passes over the
# trainable parameters' bytes, bound by memory bandwidth.
OPTIMIZER_PASSES = 7


@dataclass(frozen=True)
class Batch:
    size: int
    padded_len: int

    @property
    def tokens(self) -> int:
        return self.size * self.padded_len


def epoch_batches(lengths: list[int], batch: int, seed: int, group_by_length: bool = True,
                  extra_tokens: int = 0) -> list[Batch]:
    """The micro-batches of the first epoch, in order, as training's sampler makes them."""
    import torch

    if not lengths:
        return []
    if group_by_length:
        from tuneforge.training.sampler import SeededLengthGroupedSampler

        order = list(SeededLengthGroupedSampler(lengths, batch, seed))
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    return [Batch(len(chunk), max(lengths[j] for j in chunk) + extra_tokens)
            for chunk in (order[i:i + batch] for i in range(0, len(order), batch))]


def flops_per_token(f: Any, seq_len: int, checkpointing: bool) -> float:
    """Training FLOPs per token. Forward: 2 per matmul weight plus attention (QK^T and AV: 4 x layers x hidden x
    seq). Backward: input gradients cost as much again as the forward twice over only where gradients must flow
    through the layers; weight gradients cost 2 per *trainable* matmul weight. So full fine-tuning is ~6N, a frozen
    base with adapters ~4N, a trained head on a frozen backbone ~2N; checkpointing adds one forward (~2N)."""
    linear = 2 * f.matmul_params
    attention = 4 * f.layers * f.hidden * seq_len
    forward = linear + attention
    weight_grads = 2 * f.trainable_matmul_params
    if not f.backprop_backbone:
        return forward + weight_grads
    backward_inputs = linear + 2 * attention
    return forward + backward_inputs + weight_grads + (forward if checkpointing else 0)


@dataclass(frozen=True)
class TimeEstimate:
    seconds_per_epoch: float
    micro_batches_per_epoch: int  # per device
    optimizer_steps_per_epoch: int
    tokens_per_epoch: int  # padded tokens computed (all devices)
    flops_per_token: float  # mean over the epoch's tokens
    mfu: float | None  # None when measured
    devices: int
    source: str  # "analytic" or "dry run"

    @property
    def seconds_per_step(self) -> float:
        return self.seconds_per_epoch / max(self.optimizer_steps_per_epoch, 1)


def optimizer_seconds(f: Any, hardware: Any) -> float:
    return OPTIMIZER_PASSES * f.trainable_bytes / (hardware.bandwidth_gbs * 1e9)


def _steps(batches: list[Batch], grad_accum: int, devices: int) -> tuple[int, int]:
    micro = math.ceil(len(batches) / devices)
    return micro, math.ceil(micro / grad_accum)


def _parallel(seconds: float, devices: int) -> float:
    return seconds / (devices * (SCALING_EFFICIENCY if devices > 1 else 1.0))


def analytic_time(f: Any, batches: list[Batch], hardware: Any, devices: int, grad_accum: int, checkpointing: bool,
                  half_precision: bool) -> TimeEstimate:
    mfu = MFU[hardware.kind]
    rate = hardware.peak_flops(half_precision) * mfu
    flops = sum(b.tokens * flops_per_token(f, b.padded_len, checkpointing) for b in batches)
    tokens = sum(b.tokens for b in batches)
    micro, steps = _steps(batches, grad_accum, devices)
    seconds = _parallel(flops / rate, devices) + steps * optimizer_seconds(f, hardware)
    return TimeEstimate(seconds, micro, steps, tokens, flops / max(tokens, 1), mfu, devices, "analytic")


@dataclass(frozen=True)
class StepFit:
    """Seconds per micro-batch (one optimizer step each, as measured) = intercept + per_token x padded tokens."""

    intercept: float
    per_token: float
    points: int

    def seconds(self, tokens: int) -> float:
        return self.intercept + self.per_token * tokens


def fit_steps(samples: list[tuple[int, float]]) -> StepFit:
    """Least squares over (padded tokens, seconds) of measured steps. Too few or too similar points, or a fit that
    is not physical (negative cost), fall back to a line through the origin (time proportional to tokens)."""
    n = len(samples)
    if n == 0:
        raise ValueError("no measured steps")
    xs, ys = [float(x) for x, _ in samples], [y for _, y in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n >= 3 and sxx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        intercept = my - slope * mx
        if slope > 0 and intercept >= 0:
            return StepFit(intercept, slope, n)
    return StepFit(0.0, sum(ys) / max(sum(xs), 1.0), n)


def fitted_time(fit: StepFit, f: Any, batches: list[Batch], hardware: Any, devices: int,
                grad_accum: int) -> TimeEstimate:
    """Epoch time from measured steps. They were measured with one optimizer step per micro-batch, so micro-batches
    that only accumulate are charged without the (estimated) optimizer step."""
    micro, steps = _steps(batches, grad_accum, devices)
    total = sum(fit.seconds(b.tokens) for b in batches)
    skipped = max(len(batches) - math.ceil(len(batches) / grad_accum), 0)
    total -= skipped * min(optimizer_seconds(f, hardware), fit.intercept)
    tokens = sum(b.tokens for b in batches)
    return TimeEstimate(_parallel(total, devices), micro, steps, tokens, 0.0, None, devices, "dry run")
