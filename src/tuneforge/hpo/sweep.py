"""`tuneforge sweep`: an Optuna study over config keys, each trial a normal recorded run.

Flow: validate the search space against the config (before anything runs) -> open or create the study (SQLite in
the sweep folder, or a database URL shared by several machines) -> queue the missing trials -> K worker processes
claim and run them (pruning weak ones from their validation curves) -> best.yaml, a reference run of the default
config, and report.md/report.html in `<output_dir>/<name>-sweep/`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState

from tuneforge.config import RunConfig, dump_config, load_config, parse_config, set_override, with_absolute_paths
from tuneforge.errors import ConfigError, RunError, RunInterrupted, TuneforgeError
from tuneforge.evaluation.stats import higher_is_better
from tuneforge.hpo.report import run_summary, write_sweep_report
from tuneforge.hpo.search_space import build_space, format_value, with_params
from tuneforge.hpo.storage import (
    counts,
    default_storage,
    make_pruner,
    make_sampler,
    open_storage,
    redact,
    top_up,
    trial_id,
)
from tuneforge.hpo.worker import STORAGE_ENV, WorkerSpec, describe, run_worker, trial_raw
from tuneforge.registry.files import write_text


@dataclass
class SweepResult:
    sweep_dir: Path
    study_name: str
    storage: str  # password hidden
    metric: str
    best_value: float
    best_params: dict[str, Any]
    best_run_dir: Path
    best_config: Path  # best.yaml: `tuneforge train` it
    reference_run_dir: Path | None
    report: Path
    counts: dict[str, int]
    wall_seconds: float


def objective_metric(cfg: RunConfig) -> tuple[str, bool]:
    """The validation metric trials are selected on (the early-stopping metric) and whether higher is better."""
    from tuneforge.tasks import TASKS

    task = TASKS.get(cfg.task.name)(cfg.task)
    metric = cfg.training.early_stopping.metric
    metric = (task.training_metric or task.primary_metric) if metric == "auto" else metric.removeprefix("eval_")
    return metric, higher_is_better(metric)


def _resolve(config: RunConfig | str | Path, overrides: list[str] | None) -> tuple[RunConfig, str]:
    if not isinstance(config, RunConfig):
        return with_absolute_paths(load_config(config, overrides)), str(config)
    if overrides:
        raw = config.model_dump(mode="json")
        for assignment in overrides:
            set_override(raw, assignment)
        config = parse_config(raw)
    return with_absolute_paths(config), "<config>"


def _open_study(cfg: RunConfig, url: str, space: dict[str, BaseDistribution], metric: str, maximize: bool,
                sweep_dir: Path) -> tuple[optuna.Study, Any]:
    """Create the study, or join the existing one if it searches the same space for the same metric."""
    storage = open_storage(url)
    direction = "maximize" if maximize else "minimize"
    study = optuna.create_study(study_name=cfg.name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=make_sampler(cfg.sweep, cfg.training.seed), pruner=make_pruner(cfg.sweep))
    signature = {"metric": metric, "space": {k: distribution_to_json(d) for k, d in space.items()}}
    saved = study.user_attrs.get("tuneforge")
    if saved is None:
        if not study.trials and any(sweep_dir.glob("trial-*")):
            raise ConfigError(f"{sweep_dir} holds trial runs of a study that is not in {redact(url)}", key="name",
                              fix=f"delete or move {sweep_dir}, or set another `name`")
        study.set_user_attr("tuneforge", signature)
    elif saved != signature or study.direction.name.lower() != direction:
        what = "metric" if saved.get("metric") != metric else "search space"
        raise ConfigError(f"study '{cfg.name}' in {redact(url)} was created with another {what}",
                          key="sweep.params" if what == "search space" else "training.early_stopping.metric",
                          fix="set another `name`, give another --storage, or delete the old study")
    with warnings.catch_warnings():  # trials whose worker was killed (no heartbeat for GRACE_S): failed, replaced
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return study, storage


def _prepare_tracking(cfg: RunConfig, sweep_dir: Path, console: Any) -> str | None:
    """The user's MLflow store, with the sweep's experiment created once here: K workers creating a fresh store
    or the same experiment at the same moment would race."""
    if not cfg.tracking.mlflow:
        return None
    import logging

    from tuneforge.registry.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking.tracking_uri, Path(cfg.output_dir))
    try:
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.ERROR)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        name = f"{cfg.name}-sweep"
        if client.get_experiment_by_name(name) is None:
            artifacts = (sweep_dir / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite") else None
            client.create_experiment(name, artifact_location=artifacts)
    except Exception as exc:  # tracking mirrors the run folders; a sweep does not stop for it
        console.print(f"[yellow]warning: MLflow store not prepared ({exc}); trials log on their own[/yellow]")
    return uri


def _run_processes(spec_path: Path, url: str, workers: int, study: optuna.Study, storage: Any, metric: str,
                   sweep_dir: Path, console: Any) -> None:
    """K worker processes on one study; one line per finished trial; Ctrl-C stops every worker cleanly."""
    logs = sweep_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, STORAGE_ENV: url}
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for i in range(workers):
        log_path = logs / f"worker-{i}.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            # Own session: a terminal Ctrl-C reaches only this coordinator, which forwards one SIGINT to each worker
            # (two would make a worker abandon its checkpoint).
            procs.append((subprocess.Popen([sys.executable, "-m", "tuneforge.hpo.worker", str(spec_path),
                                            "--index", str(i)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True), log_path))
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    seen = {t.number for t in study.get_trials(deepcopy=False, states=finished)}

    def announce() -> None:
        for t in sorted(study.get_trials(deepcopy=False, states=finished), key=lambda t: t.number):
            if t.number not in seen:
                seen.add(t.number)
                console.print(describe(t, metric), highlight=False)

    interrupted = False
    try:
        while any(p.poll() is None for p, _ in procs):
            time.sleep(2)
            announce()
    except KeyboardInterrupt:
        interrupted = True
        console.print("stopping the workers (each saves a checkpoint and records its trial as failed)...")
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p, _ in procs:
            p.wait()
    announce()
    import socket

    tags = {f"{socket.gethostname()}:{p.pid}": (i, p.returncode, log) for i, (p, log) in enumerate(procs)}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") in tags:  # its worker exited mid-trial (crash, kill): fail it, do not wait
            i, code, log = tags[t.user_attrs["worker"]]
            tid = trial_id(study, storage, t.number)
            storage.set_trial_user_attr(tid, "error", f"worker {i} exited with code {code} (see {log})")
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
    for i, (p, log) in enumerate(procs):
        if p.returncode not in (0, 130):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            console.print(f"[yellow]worker {i} exited with code {p.returncode}; last lines of {log}:[/yellow]\n{tail}",
                          highlight=False)
    if interrupted:
        raise KeyboardInterrupt


def sweep(config: RunConfig | str | Path, *, trials: int | None = None, workers: int | None = None,
          storage: str | None = None, overrides: list[str] | None = None, console: Any = None) -> SweepResult:
    """Search the config's `sweep.params` with Optuna; every trial is a normal run in `<output_dir>/<name>-sweep/`.

    `trials` is the study's total (trials already in a study you resume count towards it; failed ones do not).
    Writes best.yaml (the best trial's full config), trains the default config as a reference run, and writes
    report.md/report.html. Selection is on the validation metric; test scores are reported, never used.
    """
    from rich.console import Console

    from tuneforge.api import train

    began = time.perf_counter()
    con = console or Console()
    cfg, source = _resolve(config, overrides)
    n = trials if trials is not None else cfg.sweep.trials
    k = workers if workers is not None else cfg.sweep.workers
    for key, value in (("sweep.trials", n), ("sweep.workers", k)):
        if value < 1:
            raise ConfigError(f"must be at least 1 (got {value})", key=key, fix="e.g. --trials 20 --workers 2")
    raw = cfg.model_dump(mode="json")
    space = build_space(raw, cfg.sweep.params, source)  # every key checked before any trial runs
    metric, maximize = objective_metric(cfg)
    sweep_dir = Path(cfg.output_dir) / f"{cfg.name}-sweep"
    url = storage or cfg.sweep.storage or default_storage(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study, rdb = _open_study(cfg, url, space, metric, maximize, sweep_dir)
    existing = len(study.trials)
    queued = top_up(study, n, url, replace_failures=False)
    spec = WorkerSpec(raw=raw, space={k_: distribution_to_json(d) for k_, d in space.items()},
                      study_name=cfg.name, metric=metric, sweep_dir=str(sweep_dir), budget=n,
                      # Reproducible for a fresh study; shifted when joining or resuming one, so that this
                      # invocation's workers do not replay the random draws of the first one's.
                      seed=cfg.training.seed + 1000 * existing,
                      deadline=time.time() + cfg.sweep.timeout_s if cfg.sweep.timeout_s else None,
                      # K workers share the cores unless the config pins threads
                      threads=None if k == 1 or cfg.training.threads else max(1, (os.cpu_count() or 1) // k),
                      tracking_uri=_prepare_tracking(cfg, sweep_dir, con))
    spec_path = spec.save(sweep_dir / "sweep.json")
    con.print(f"sweep [bold]{cfg.name}[/bold]: {n} trials ({queued} queued now), {k} worker(s), "
              f"objective validation {metric}, study in {redact(url)}")
    try:
        if k == 1:
            run_worker(spec, url, 0, Console(quiet=True),  # one line per trial here; details are in each run folder
                       on_trial=lambda t: con.print(describe(t, metric), highlight=False))
        else:
            _run_processes(spec_path, url, k, study, rdb, metric, sweep_dir, con)
    except (KeyboardInterrupt, RunInterrupted):
        raise RunInterrupted("sweep stopped; finished trials are kept in the study",
                             fix="run the same command again to continue (stopped trials are replaced)") from None
    c = counts(study)
    info = {"metric": metric, "maximize": maximize, "config": source, "storage": redact(url),
            "sampler": cfg.sweep.sampler, "pruner": cfg.sweep.pruner, "workers": k, "trials": n,
            "params": list(space), "best_config": str(sweep_dir / "best.yaml"), "reference_error": None}
    if c["complete"] == 0:
        info["wall_seconds"] = time.perf_counter() - began
        report = write_sweep_report(sweep_dir, study, info, None)
        first = next((t.user_attrs.get("error") for t in study.get_trials(deepcopy=False)
                      if t.state == TrialState.FAIL), None)
        raise RunError(f"no trial completed ({c['fail']} failed, {c['pruned']} pruned)"
                       + (f"; first error: {first}" if first else ""), fix=f"see {report}")
    best = study.best_trial
    best_raw = with_params(raw, best.params)
    best_raw["name"], best_raw["output_dir"] = f"{cfg.name}-best", cfg.output_dir
    header = (f"# Best trial {best.number} of sweep '{cfg.name}': validation {metric} = {best.value:.4f}\n"
              + "".join(f"#   {k_} = {format_value(v)}\n" for k_, v in best.params.items()))
    best_path = write_text(sweep_dir / "best.yaml", header + dump_config(parse_config(best_raw)))
    ref_dir = sweep_dir / "reference"
    if not (ref_dir / "metrics.json").is_file():  # the default config, trained once per sweep folder
        con.print("training the default config (no sweep values) as the reference run")
        try:
            train(parse_config(trial_raw(spec, {}, "reference", threads=False)), console=Console(quiet=True),
                  quiet=True, resume=(ref_dir / "config.yaml").is_file())
        except RunInterrupted:
            raise
        except TuneforgeError as exc:
            info["reference_error"] = str(exc)
    info["wall_seconds"] = time.perf_counter() - began
    reference = run_summary(ref_dir)
    report = write_sweep_report(sweep_dir, study, info, reference)
    con.print(f"best: trial {best.number}, validation {metric} {best.value:.4f} "
              f"({', '.join(f'{k_}={format_value(v)}' for k_, v in best.params.items())})")
    con.print(f"best config: {best_path}   report: {report}")
    return SweepResult(sweep_dir, cfg.name, redact(url), metric, float(best.value), dict(best.params),  # type: ignore[arg-type]
                       Path(best.user_attrs["run_dir"]), best_path, ref_dir if reference else None, report, c,
                       info["wall_seconds"])
