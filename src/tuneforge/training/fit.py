"""The fit stage: encode the splits, run the task's trainer (with checkpoints, early stopping and the guards), and
hand back the trained model and what happened. A stop signal leaves a checkpoint and says how to continue."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunInterrupted


@dataclass
class Fitted:
    model: Any
    history: list[dict[str, Any]]
    train_seconds: float
    state: Any  # transformers TrainerState
    overfitting: list[dict[str, Any]]
    resumed_from: Path | None
    refit: dict[str, Any] | None = None  # training.refit: the second run on train + validation

    def facts(self, metric: str, built: Any) -> dict[str, Any]:
        """The run's training record (train section of metrics.json)."""
        state = self.state
        return {"train_seconds": round(self.train_seconds, 2), "steps": state.global_step, "epochs": state.epoch,
                "best_step": state.best_global_step, "best_metric": state.best_metric, "metric": metric,
                "trainable_params": built.trainable, "total_params": built.total, "overfitting": self.overfitting,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                "stopped_early": bool(state.global_step < state.max_steps), "refit": self.refit}


def _mark_training(run_dir: Path) -> Any:
    """A callback writing run.json `training` once training has really begun: after the stop-signal handlers are
    installed (by the callbacks before it), so a SIGTERM from then on always ends in a checkpoint."""
    from transformers import TrainerCallback

    from tuneforge.registry.run_folder import set_status

    class MarkTraining(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            set_status(run_dir, "training", started=time.time())

    return MarkTraining()


def fit(recipe: Any, built: Any, data: Any, *, console: Any, quiet: bool, resume_from: Path | None,
        callbacks: list[Any] | None = None) -> Fitted:
    from tuneforge.registry.run_folder import set_status
    from tuneforge.training.builder import trainer_parts
    from tuneforge.training.callbacks import LiveMetricsLog
    from tuneforge.training.refit import refit, snapshot_trainable
    from tuneforge.training.trainer import build_trainer

    cfg, task, tokenizer, labels = recipe.cfg, recipe.task, recipe.tokenizer, data.labels
    run_dir, max_len = cfg.run_dir, cfg.data.max_length
    train_ds = task.encode(data.splits["train"], tokenizer, labels, max_len)
    val_ds = task.encode(data.splits["validation"], tokenizer, labels, max_len)
    weights = task.loss_weights(data.splits["train"], labels) if cfg.training.class_weights else None
    collator, spec = trainer_parts(recipe, built)
    trainer, overfit, stop = build_trainer(cfg, built.model, tokenizer, train_ds, val_ds, collator,
                                           task.compute_metrics(labels), recipe.metric, run_dir / "checkpoints",
                                           console, quiet, weights, loss_only=task.loss_only_eval,
                                           trainer_options=task.trainer_options(), spec=spec,
                                           extra_callbacks=[*(callbacks or []), _mark_training(run_dir),
                                                            LiveMetricsLog(run_dir)])
    initial = snapshot_trainable(built.model) if cfg.training.refit else None
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        stop.restore_handlers()
    seconds = time.perf_counter() - start
    if stop.requested:
        set_status(run_dir, "interrupted", step=trainer.state.global_step)
        raise RunInterrupted(f"stopped at step {trainer.state.global_step}; a checkpoint was saved in "
                             f"{run_dir / 'checkpoints'}", fix="continue with `tuneforge train CONFIG --resume`")
    fitted = Fitted(trainer.model, [dict(h) for h in trainer.state.log_history], seconds, trainer.state,
                    overfit.events, resume_from)
    if initial is not None:  # early stopping chose the length; train once more on train + validation
        both = task.encode(data.splits["train"] + data.splits["validation"], tokenizer, labels, max_len)
        fitted.model, fitted.refit = refit(cfg, trainer, initial, both, collator, tokenizer, recipe.metric, run_dir,
                                           console, quiet, class_weights=weights,
                                           trainer_options=task.trainer_options(), spec=spec)
    return fitted
