"""`training.refit: true`: after early stopping has chosen a step count on validation, train once more from the same
starting weights on train + validation for exactly that many optimiser steps, and keep that model.

Why: early stopping needs a held-out validation split, so the model it picks never learnt from those examples. On
small data sets (the ones starter configs meet) the validation split is a real share of what there is; the refit
puts it back into training while keeping the one thing validation was for, the length of training.

How the second run differs from the first: no evaluation, no checkpoints, no early stopping, and the learning-rate
schedule (warm-up ratio, decay) spans the chosen steps, so it ends annealed as a fixed-length run would. Everything
else (optimizer, batch size, seed, sampler, loss weights) is the first run's.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tuneforge.config import RunConfig


def snapshot_trainable(model: Any) -> dict[str, torch.Tensor]:
    """The starting values of every trainable parameter (on CPU), taken before the first run changes them.
    Frozen parameters are left out: neither run changes them, so they need no copy."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def restore_trainable(model: Any, snapshot: dict[str, torch.Tensor]) -> None:
    """Put the snapshot back in place, so the refit starts where the first run started."""
    params = dict(model.named_parameters())
    missing = sorted(set(snapshot) - set(params))
    if missing:
        raise RuntimeError(f"refit: the model lost parameters since the snapshot (first: {missing[0]})")
    with torch.no_grad():
        for name, value in snapshot.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def chosen_steps(state: Any) -> int:
    """The step count early stopping chose: the restored best checkpoint's step, else where training ended."""
    return int(state.best_global_step or state.global_step)


def count_trained_rows(trainer: Any) -> list[int]:
    """Count the rows of every batch the trainer steps on (the collator sees one batch more: accelerate's loader
    runs a batch ahead), so the record says what the refit trained on. Returns the live counter."""
    seen = [0]
    step = trainer.training_step

    def counted(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        rows = inputs.get("input_ids", inputs.get("labels"))
        seen[0] += len(rows) if rows is not None else 0
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = counted
    return seen


def refit_config(cfg: RunConfig, steps: int) -> RunConfig:
    """The first run's config with a fixed length and nothing that needs a validation split."""
    training = cfg.training.model_copy(update={
        "max_steps": steps, "restore_best": False,
        "early_stopping": cfg.training.early_stopping.model_copy(update={"patience": None}),
        "overfit": cfg.training.overfit.model_copy(update={"stop": False})})
    return cfg.model_copy(update={"training": training})


def refit(cfg: RunConfig, first: Any, initial: dict[str, torch.Tensor], train_ds: Any, collator: Any,
          tokenizer: Any, metric: str, run_dir: Path, console: Any, quiet: bool = False, *,
          class_weights: torch.Tensor | None = None, trainer_options: dict[str, Any] | None = None,
          spec: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train `first.model`, reset to `initial`, on `train_ds` (train + validation, encoded) for the step count
    the first run's early stopping chose. Returns the refit model and what the record needs."""
    from tuneforge.errors import RunInterrupted
    from tuneforge.training.trainer import TrainerSpec, build_trainer

    steps = chosen_steps(first.state)
    model = first.model
    restore_trainable(model, initial)
    spec = spec or TrainerSpec()
    extra = {**spec.args_extra, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
    trainer, _, stop = build_trainer(refit_config(cfg, steps), model, tokenizer, train_ds, None, collator, None,
                                     metric, run_dir / "refit", console, quiet, class_weights,
                                     trainer_options=trainer_options, spec=replace(spec, args_extra=extra))
    seen = count_trained_rows(trainer)
    console.print(f"refit: {steps} steps on train + validation ({len(train_ds):,} examples)")
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        stop.restore_handlers()
    if stop.requested:
        raise RunInterrupted(f"stopped during the refit at step {trainer.state.global_step}",
                             fix="run again with `tuneforge train CONFIG --resume` (the refit restarts)")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    info = {"steps": trainer.state.global_step, "chosen_steps": steps, "examples": len(train_ds),
            "examples_seen": seen[0], "epochs": trainer.state.epoch,
            "seconds": round(time.perf_counter() - start, 2), "final_train_loss": losses[-1] if losses else None}
    return trainer.model, info
