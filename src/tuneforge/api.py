"""The Python API: the product. The CLI, later the server and HPO, call these functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig, resolve_config
from tuneforge.console import console_or_default
from tuneforge.errors import DataError, RunInterrupted
from tuneforge.evaluation.run_evaluation import evaluate_run
from tuneforge.registry.files import write_json, write_text
from tuneforge.registry.loaded_run import LoadedRun, load_run
from tuneforge.training import builder
from tuneforge.training.fit import fit


@dataclass
class RunResult:
    run_dir: Path
    test_metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    comparison: list[dict[str, Any]]
    train_info: dict[str, Any]
    tracking: dict[str, Any] = field(default_factory=dict)


def prepare_data(config: RunConfig | str | Path, overrides: list[str] | None = None) -> Any:
    """Load, validate, clean and split the data of a config; returns PreparedData (with its report)."""
    from tuneforge.data.prepare import prepare_data as _prepare
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS

    cfg = resolve_config(config, overrides)
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, cfg.output_dir), cfg.model.trust_remote_code,
                               cfg.model.revision)
    return _prepare(cfg, TASKS.get(cfg.task.name)(cfg.task), tokenizer)


def train(config: RunConfig | str | Path, *, resume: bool = False, overrides: list[str] | None = None,
          console: Any = None, quiet: bool = False, callbacks: list[Any] | None = None) -> RunResult:
    """Prepare data, fine-tune, evaluate against base-model baselines, and record everything in the run folder.
    `callbacks` are extra transformers TrainerCallbacks (a sweep passes its pruning callback)."""
    from tuneforge.registry.run_folder import mark_failed, open_run_folder
    from tuneforge.registry.run_log import library_output_to
    from tuneforge.training import distributed as dist

    cfg = resolve_config(config, overrides)
    if cfg.data.augment is not None and cfg.data.augment.keep == "if_better":  # two runs; the better is kept
        from tuneforge.training.augment_choice import train_keeping_better

        return train_keeping_better(cfg, train, RunResult, resume=resume, console=console, quiet=quiet,
                                    callbacks=callbacks)
    main = dist.is_main()  # under torchrun rank 0 alone writes the run folder; the others train beside it
    con = console_or_default(console) if main else console_or_default(_quiet_console())
    resume_from = open_run_folder(cfg, resume) if main else None
    _seed_and_threads(cfg)
    log = cfg.run_dir / "logs" / ("train.log" if main else f"train-rank{dist.rank()}.log")
    with library_output_to(log):
        with dist.main_process_first():
            recipe, data = _prepare_stage(cfg, resume, con, quiet) if main else _prepared_by_rank0(cfg, resume)
        if not main and resume:
            from tuneforge.training.checkpoint import latest_checkpoint

            resume_from = latest_checkpoint(cfg.run_dir / "checkpoints")
        try:
            built, facts = _build_stage(recipe, data, con)
            fitted = fit(recipe, built, data, console=con, quiet=quiet or not main, resume_from=resume_from,
                         callbacks=callbacks)
            if not main:  # evaluation and records are rank 0's
                return RunResult(cfg.run_dir, {}, {}, [], fitted.facts(recipe.metric, built))
            result = evaluate_run(recipe, fitted.model, data, con)
            return _record_stage(recipe, data, built, fitted, result, facts, con)
        except RunInterrupted:
            raise
        except BaseException as exc:  # a crash is recorded as such; checkpoints stay for --resume
            mark_failed(cfg.run_dir, exc)
            raise


def _quiet_console() -> Any:
    from rich.console import Console

    return Console(quiet=True)


def _prepared_by_rank0(cfg: RunConfig, resume: bool) -> tuple[Any, Any]:
    """Another rank of a multi-process run: the same recipe, and the splits rank 0 wrote (never re-prepared)."""
    from tuneforge.training.distributed import read_prepared

    return builder.resolve(cfg), read_prepared(cfg.run_dir)


def _seed_and_threads(cfg: RunConfig) -> None:
    import torch
    from transformers import set_seed

    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    set_seed(cfg.training.seed)


def _prepare_stage(cfg: RunConfig, resume: bool, con: Any, quiet: bool) -> tuple[Any, Any]:
    """Resolve the config (no weights yet), then load, clean and split the data and write it to the run folder."""
    from tuneforge.data.prepare import prepare_data as _prepare
    from tuneforge.data.report import render_report
    from tuneforge.registry.run_folder import write_prepared

    recipe = builder.resolve(cfg)
    data = _prepare(cfg, recipe.task, recipe.tokenizer)
    write_prepared(cfg, data, resume)
    if not quiet:
        render_report(data.report, con)
    return recipe, data


def _build_stage(recipe: Any, data: Any, con: Any) -> tuple[Any, dict[str, Any]]:
    """The trainable model; the task sees the plain base first (e.g. to measure forgetting later)."""
    from tuneforge.registry.environment import environment

    cfg, task = recipe.cfg, recipe.task
    facts: dict[str, Any] = {}

    def before_method(model: Any) -> None:
        facts.update(task.before_training(model, recipe.tokenizer, data.splits, cfg.training.seed, cfg.run_dir))

    built = builder.build(recipe, data.labels, before_method=before_method)
    if task.supports_fast_path:
        con.print(built.fast.summary())
    from tuneforge.training.distributed import is_main, world_size

    if is_main():
        write_json(cfg.run_dir / "environment.json", {**environment(_device(cfg)), "base_model": recipe.base_lineage,
                                                      "processes": world_size()})
    con.print(f"method [bold]{recipe.method.name}[/bold]: {built.trainable:,} trainable of {built.total:,} "
              f"parameters ({100 * built.trainable / built.total:.2f}%)")
    return built, facts


def _device(cfg: RunConfig) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and cfg.training.device in ("auto", "cuda") else "cpu"


def _record_stage(recipe: Any, data: Any, built: Any, fitted: Any, result: Any, facts: dict[str, Any],
                  con: Any) -> RunResult:
    """Model, reports, model card, metrics.json and the MLflow mirror; run.json says finished last."""
    from tuneforge.evaluation.run_evaluation import forgetting_facts, write_run_reports
    from tuneforge.registry.artifacts import save_model
    from tuneforge.registry.model_card import model_card
    from tuneforge.registry.run_folder import mirror_to_mlflow, set_status, write_history, write_metrics

    cfg, run_dir = recipe.cfg, recipe.cfg.run_dir
    save_model(run_dir / "model", recipe.task, recipe.method, fitted.model, recipe.tokenizer, data.labels,
               "default" if cfg.model.path == "default" else recipe.model_path, cfg.data.max_length,
               cfg.model.revision, cfg.model.trust_remote_code)
    train_info = {**fitted.facts(recipe.metric, built), **facts}
    train_info.update(forgetting_facts(train_info, result.test.metrics))
    write_history(run_dir, fitted.history, result.test, result.baselines)
    write_run_reports(run_dir, recipe, result, fitted.history, train_info, data)
    write_text(run_dir / "README.md", model_card(cfg, recipe.task, recipe.method.library_name, result.test.metrics,
                                                 result.rows, data.report, built.trainable, built.total))
    metrics = {"test": result.test.metrics, "per_class": result.test.per_class,
               "baselines": {k: v.metrics for k, v in result.baselines.items()}, "comparison": result.rows,
               "train": train_info, "primary_metric": result.primary}
    write_metrics(run_dir, metrics)
    tracking = mirror_to_mlflow(cfg, run_dir, metrics, fitted.history, con)
    set_status(run_dir, "finished", finished=time.time(), tracking=tracking)
    con.print(f"report: {run_dir / 'report.md'}")
    return RunResult(run_dir, result.test.metrics, metrics["baselines"], result.rows, train_info, tracking)


Run = LoadedRun  # the name earlier releases exported


def predict(run: str | Path | LoadedRun, texts: list[Any]) -> list[dict[str, Any]]:
    return (run if isinstance(run, LoadedRun) else load_run(run)).predict(texts)


def predict_file(run: str | Path | LoadedRun, in_file: str | Path) -> list[dict[str, Any]]:
    """Predict every record of a data file (any supported format); returns the records with a `prediction`."""
    from tuneforge.data.sources import read_records

    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    key, pair = loaded.task.input_fields(loaded.config.data.columns)
    records, inputs = [], []
    for raw, src, line in read_records(str(in_file), "auto", loaded.task.name):
        for needed in [key] + ([pair] if pair else []):
            if needed not in raw or raw[needed] in (None, "", []):
                raise DataError(f"missing or empty '{needed}'", file=src, line=line,
                                fix=f"give every record a '{needed}' (the model was trained with it)")
        records.append(raw)
        inputs.append((raw[key], raw[pair]) if pair else raw[key])
    return [{**r, "prediction": p} for r, p in zip(records, loaded.predict(inputs), strict=True)]
