"""Pruning: report each validation score to the Optuna trial and stop a weak trial at that evaluation."""

from __future__ import annotations

from typing import Any

import optuna
from transformers import TrainerCallback


class TrialPruned(optuna.TrialPruned):
    """Raised out of `trainer.train()` when the pruner stops a trial; carries where it stopped.

    Raising (rather than setting `control.should_training_stop`) means a pruned trial never reaches the test
    evaluation, baselines, model save or MLflow logging of a finished run: no time is spent on it, and its folder
    cannot be mistaken for a finished run (the worker marks it `pruned` in run.json).
    """

    def __init__(self, evaluation: int, step: int, metric: str, value: float) -> None:
        self.evaluation, self.step, self.metric, self.value = evaluation, step, metric, value
        super().__init__(f"pruned at evaluation {evaluation} (step {step}): validation {metric}={value:.4f}")


class PruningCallback(TrainerCallback):
    """Reports `eval_<metric>` at every evaluation and raises TrialPruned when the study's pruner says so.

    The intermediate value's step is the evaluation count (1, 2, ...), not the global step: with evaluation once
    per epoch, trials of different batch sizes then line up on the same steps, so the median pruner can compare
    them (global steps would differ and never match).
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.evaluations = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kw: Any) -> None:
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self.evaluations += 1
        value = float(value)
        # A NaN score is reported as is: Optuna's pruners prune a trial whose best intermediate value is NaN.
        self.trial.report(value, step=self.evaluations)
        if self.trial.should_prune():
            raise TrialPruned(self.evaluations, int(state.global_step), self.metric, value)
