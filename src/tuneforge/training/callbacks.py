"""Trainer callbacks: rich progress with ETA and live loss, overfitting detection, NaN guard."""

from __future__ import annotations

import itertools
import math
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import ExportableState

from tuneforge.errors import TrainingDiverged


def restore_attributes(callback: Any, state: Any) -> None:
    """Put back what `ExportableState.state()` saved in the checkpoint being resumed (no-op on a fresh start).

    transformers' own restore (`restore_callback_states_from_checkpoint`) builds new callback objects, which would
    orphan the ones the API holds; restoring in place keeps them.
    """
    data = (state.stateful_callbacks or {}).get(type(callback).__name__)
    if isinstance(data, list):
        data = data[-1] if data else None
    for key, value in (data or {}).get("attributes", {}).items():
        setattr(callback, key, value)


class ResumableEarlyStopping(EarlyStoppingCallback):
    """Early stopping whose patience counter survives a resume, so a resumed run stops where an unbroken one would."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        super().on_train_begin(args, state, control, **kw)
        restore_attributes(self, state)


class RichProgress(TrainerCallback):
    """One progress bar for the whole run (ETA, live loss) and one line per evaluation."""

    def __init__(self, console: Any, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.progress: Any = None
        self.task: Any = None
        self.loss = float("nan")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.quiet:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step,
                                 info=f"loss {self.loss:.4f} epoch {state.epoch or 0:.2f}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kw: Any) -> None:
        if self.progress is not None and metrics:
            shown = "  ".join(f"{k.removeprefix('eval_')}={v:.4f}" for k, v in metrics.items()
                              if isinstance(v, float) and not k.endswith(("runtime", "per_second", "epoch")))
            self.progress.console.print(f"  step {state.global_step}: {shown}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class OverfitDetector(TrainerCallback, ExportableState):
    """Warns (or stops) when validation loss rises for `patience` evaluations in a row while training loss falls."""

    def __init__(self, patience: int, stop: bool, console: Any | None = None) -> None:
        self.patience, self.stop, self.console = patience, stop, console
        self.eval_losses: list[float] = []
        self.train_losses: list[float] = []
        self._window: list[float] = []
        self.events: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        return {"args": {"patience": self.patience, "stop": self.stop},
                "attributes": {"eval_losses": self.eval_losses, "train_losses": self.train_losses,
                               "_window": self._window, "events": self.events}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        restore_attributes(self, state)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self._window.append(float(logs["loss"]))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kw: Any) -> None:
        if not metrics or "eval_loss" not in metrics:
            return
        self.eval_losses.append(float(metrics["eval_loss"]))
        if self._window:
            self.train_losses.append(sum(self._window) / len(self._window))
            self._window = []
        k = self.patience
        if len(self.eval_losses) <= k or len(self.train_losses) <= k:
            return
        val = self.eval_losses[-k - 1:]
        train = self.train_losses[-k - 1:]
        val_rising = all(b > a for a, b in itertools.pairwise(val))
        train_falling = train[-1] < train[0]
        if val_rising and train_falling and not any(e["step"] == state.global_step for e in self.events):
            event = {"step": state.global_step, "eval_loss": val, "train_loss": train, "stopped": self.stop}
            self.events.append(event)
            if self.console is not None:
                self.console.print(f"[yellow]warning: overfitting: validation loss rose for {k} evaluations "
                                   f"({val[0]:.4f} -> {val[-1]:.4f}) while training loss fell "
                                   f"({train[0]:.4f} -> {train[-1]:.4f}) at step {state.global_step}"
                                   + ("; stopping" if self.stop else "") + "[/yellow]")
            if self.stop:
                control.should_training_stop = True


class NanGuard(TrainerCallback):
    """Stops with a clear error when the training loss becomes NaN or infinite (no silent garbage model)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"training loss became {loss} at step {state.global_step}",
                                   fix="lower training.learning_rate or check the data for broken labels")


class GracefulStop(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second signal: give up on a clean stop
            raise KeyboardInterrupt
        self.requested = True

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.restore_handlers()

    def restore_handlers(self) -> None:
        """Also called in a `finally` by the API: a failed run must not leave Ctrl-C swallowed."""
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


LIVE_METRICS = "logs/metrics.jsonl"


class LiveMetricsLog(TrainerCallback):
    """Appends every logged step (train loss, eval metrics) to the run folder's `logs/metrics.jsonl` as it happens,
    so a dashboard can draw the curves of a run that is still training. One JSON object a line, flushed at once; a
    resume appends again from its checkpoint's step, and readers keep the last value per step."""

    def __init__(self, run_dir: Any) -> None:
        from pathlib import Path

        self.path = Path(run_dir) / LIVE_METRICS
        self._started = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        import json
        import time

        from tuneforge.training.distributed import is_main

        numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float) and math.isfinite(v)}
        if not numbers or not is_main():
            return
        line = json.dumps({"step": state.global_step, "epoch": state.epoch, "time": time.time(), **numbers})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                if fh.tell() and not self._started:  # a process killed mid-line: end its torn line first
                    fh.seek(-1, 2)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                self._started = True
                fh.write(line.encode("utf-8") + b"\n")
        except OSError:  # a live view is a convenience: a full disk must not stop the run here
            pass
