"""One sweep worker: claims queued trials from the shared study and runs each as a normal recorded run.

    python -m tuneforge.hpo.worker SWEEP_DIR/sweep.json --index I     (started by `tuneforge sweep`, one per worker)

The storage URL comes in the TUNEFORGE_SWEEP_STORAGE environment variable, so a database password is never
written into the sweep folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from tuneforge.config import RunConfig, parse_config
from tuneforge.errors import RunError, RunInterrupted, TuneforgeError
from tuneforge.hpo.pruning import PruningCallback, TrialPruned
from tuneforge.hpo.search_space import format_value, suggest, with_params
from tuneforge.hpo.storage import (
    Heartbeat,
    claim_trial,
    counts,
    make_pruner,
    make_sampler,
    open_storage,
    setup_broken,
    top_up,
    trial_id,
    worker_tag,
)
from tuneforge.registry.files import write_json

STORAGE_ENV = "TUNEFORGE_SWEEP_STORAGE"


@dataclass
class WorkerSpec:
    """What every worker needs, written once by the coordinator as sweep.json (no storage URL: see above)."""

    raw: dict[str, Any]  # the base config (absolute paths), before any trial's parameters
    space: dict[str, str]  # dotted key -> Optuna distribution as JSON
    study_name: str
    metric: str
    sweep_dir: str
    budget: int  # trials requested: also caps how many failed trials are replaced
    seed: int
    deadline: float | None = None  # time.time() after which no new trial starts
    threads: int | None = None  # torch threads per trial when the config leaves it open
    tracking_uri: str | None = None  # the user's MLflow store, so all trials land in one place

    def save(self, path: Path) -> Path:
        return write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> WorkerSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def distributions(self) -> dict[str, BaseDistribution]:
        return {key: json_to_distribution(text) for key, text in self.space.items()}


def trial_raw(spec: WorkerSpec, params: dict[str, Any], name: str, *, threads: bool = True) -> dict[str, Any]:
    """The raw config of one run of the sweep: the base config, the trial's values, its own folder in the sweep
    folder, trials grouped in one MLflow experiment and not each registered as a model."""
    raw = with_params(spec.raw, params)
    raw["name"], raw["output_dir"] = name, spec.sweep_dir
    training = raw.setdefault("training", {})
    if threads and spec.threads and not training.get("threads"):
        training["threads"] = spec.threads
    tracking = raw.setdefault("tracking", {})
    tracking.update(experiment=f"{spec.study_name}-sweep", register_model=False)
    if spec.tracking_uri:
        tracking["tracking_uri"] = spec.tracking_uri
    return raw


def trial_config(spec: WorkerSpec, params: dict[str, Any], name: str) -> RunConfig:
    return parse_config(trial_raw(spec, params, name))


def describe(trial: FrozenTrial, metric: str) -> str:
    """One line per finished trial, as printed by the coordinator."""
    params = ", ".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in trial.params.items())
    head = f"trial {trial.number:3d} {trial.state.name.lower():8s}"
    if trial.state == TrialState.COMPLETE:
        return f"{head} validation {metric}={trial.value:.4f}  ({params})"
    if trial.state == TrialState.PRUNED:
        at = trial.user_attrs.get("pruned_at", {})
        return f"{head} at evaluation {at.get('evaluation', '?')}: {metric}={trial.value:.4f}  ({params})"
    return f"{head} {trial.user_attrs.get('error', '')}  ({params})"


def _mark_pruned(run_dir: Path, number: int, exc: TrialPruned) -> None:
    """A pruned run folder says so (never `finished`); its checkpoints are dropped: nobody resumes a pruned trial,
    and they are most of its size."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    write_json(run_dir / "run.json", {"status": "pruned", "trial": number, "evaluation": exc.evaluation,
                                      "step": exc.step, "metric": exc.metric, "value": exc.value,
                                      "finished": time.time(), "checkpoints": "removed"})


def _fail(study: optuna.Study, trial: optuna.Trial, message: str) -> FrozenTrial:
    trial.set_user_attr("error", message[:2000])
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: WorkerSpec, space: dict[str, BaseDistribution],
              heartbeat_storage: Any, console: Any) -> FrozenTrial:
    """Sample, train (a normal run through `tuneforge.train`), and tell the study how it ended."""
    import torch

    from tuneforge.api import train

    name = f"trial-{trial.number:03d}"
    run_dir = Path(spec.sweep_dir) / name
    existed = run_dir.exists()
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", worker_tag())
    beat = Heartbeat(heartbeat_storage, trial_id(study, heartbeat_storage, trial.number))
    try:
        params = suggest(trial, space)
        pruning = PruningCallback(trial, spec.metric)
        result = train(trial_config(spec, params, name), console=console, quiet=True, callbacks=[pruning])
        value = result.train_info.get("best_metric")
        if value is None or not math.isfinite(value):
            raise RunError(f"the run reported no finite validation {spec.metric} ({value})",
                           fix="check that the config evaluates on a validation split")
        trial.set_user_attr("test_metrics", result.test_metrics)  # shown in the report, never used to select
        trial.set_user_attr("train_seconds", result.train_info.get("train_seconds"))
        trial.set_user_attr("evaluations", pruning.evaluations)
        return study.tell(trial, float(value))
    except TrialPruned as exc:
        _mark_pruned(run_dir, trial.number, exc)
        trial.set_user_attr("pruned_at", {"evaluation": exc.evaluation, "step": exc.step})
        return study.tell(trial, state=TrialState.PRUNED)
    except RunInterrupted as exc:
        _fail(study, trial, f"interrupted: {exc.message}")
        raise
    except (TuneforgeError, torch.OutOfMemoryError) as exc:  # a bad draw or a user error: recorded, sweep goes on
        frozen = _fail(study, trial, str(exc) if isinstance(exc, TuneforgeError) else f"out of memory: {exc}")
        if not existed and run_dir.is_dir():  # never touch a folder this trial did not create
            write_json(run_dir / "run.json", {"status": "failed", "trial": trial.number, "error": str(exc)[:2000],
                                              "finished": time.time()})
        return frozen
    except BaseException as exc:  # Ctrl-C outside training, or a programming error: record it, keep the traceback
        why = "interrupted (outside training)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):  # the original error matters more than the bookkeeping
            _fail(study, trial, why)
        raise
    finally:
        beat.stop()


def run_worker(spec: WorkerSpec, storage_url: str, index: int, console: Any,
               on_trial: Callable[[FrozenTrial], None] | None = None) -> int:
    """Claim and run trials until the queue is empty or the deadline passes. Returns the number of trials run."""
    storage = open_storage(storage_url)
    sweep = parse_config(spec.raw).sweep
    # Each worker gets its own sampler seed: the same seed everywhere would draw the same random startup trials.
    study = optuna.load_study(study_name=spec.study_name, storage=storage,
                              sampler=make_sampler(sweep, spec.seed + index), pruner=make_pruner(sweep))
    space = spec.distributions()
    done = 0
    while spec.deadline is None or time.time() < spec.deadline:
        trial = claim_trial(study, storage, storage_url)
        if trial is None:
            if top_up(study, spec.budget, storage_url):  # replacements for failed trials, if any are due
                continue
            break
        frozen = run_trial(study, trial, spec, space, storage, console)
        done += 1
        if on_trial is not None:
            on_trial(frozen)
        if setup_broken(counts(study), spec.budget):
            break
    return done


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m tuneforge.hpo.worker")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    url = os.environ.get(STORAGE_ENV)
    if not url:
        sys.exit(f"{STORAGE_ENV} is not set (workers are started by `tuneforge sweep`)")
    spec = WorkerSpec.load(args.spec)
    console = Console(width=120)
    try:
        n = run_worker(spec, url, args.index, console,
                       on_trial=lambda t: console.print(describe(t, spec.metric), highlight=False))
    except (RunInterrupted, KeyboardInterrupt):
        console.print("worker interrupted; its trial was recorded as failed")
        sys.exit(130)
    except TuneforgeError as exc:
        console.print(f"error: {exc}")
        sys.exit(exc.exit_code)
    console.print(f"worker {args.index} done: {n} trial(s)")


if __name__ == "__main__":
    main()
