"""The Python API: the product. The CLI, later the server and HPO, call these functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig, dump_config, load_config, with_absolute_paths
from tuneforge.errors import ConfigError, DataError, RunError, RunInterrupted
from tuneforge.registry.files import read_json, write_json, write_jsonl, write_text


@dataclass
class RunResult:
    run_dir: Path
    test_metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    comparison: list[dict[str, Any]]
    train_info: dict[str, Any]
    tracking: dict[str, Any] = field(default_factory=dict)


def _console(console: Any) -> Any:
    from rich.console import Console

    return console or Console()


def _resolve(config: RunConfig | str | Path, overrides: list[str] | None) -> RunConfig:
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    return with_absolute_paths(cfg)


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return prefix.rstrip(".") if a != b else None


def _setup(cfg: RunConfig, resume: bool) -> Path | None:
    """Check the run folder (never overwrite work) and return the checkpoint to resume from."""
    from tuneforge.training.checkpoint import latest_checkpoint

    run_dir = cfg.run_dir
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"run folder {run_dir} already exists",
                           fix="add --resume to continue it, set another `name`, or delete the folder")
        return None
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"nothing to resume in {run_dir} (no config.yaml)", fix="run without --resume")
    if (run_dir / "metrics.json").is_file():
        raise RunError(f"run {run_dir} already finished", fix="set another `name` to train again")
    saved = with_absolute_paths(load_config(run_dir / "config.yaml"))
    diff = _first_difference(saved.model_dump(mode="json"), cfg.model_dump(mode="json"))
    if diff:
        raise ConfigError("differs from the run being resumed", key=diff,
                          fix=f"resume with the same config (saved in {run_dir / 'config.yaml'})")
    return latest_checkpoint(run_dir / "checkpoints")


def _revision(cfg: RunConfig) -> dict[str, Any]:
    return {"revision": cfg.model.revision} if cfg.model.revision else {}


def check_method_task(cfg: RunConfig, task: Any, method: Any) -> None:
    """Method x task x config combinations that cannot work on any machine (shared by `train` and `plan`)."""
    supported = method.supported_task_types
    if supported is not None and task.peft_task_type not in supported:
        raise ConfigError(f"method {method.name!r} does not work for {task.name} models in this transformers "
                          f"version", key="method.name", fix="use lora, dora, ia3 or adapter")
    task.check_config(cfg)
    if method.uses_kv_prefix and getattr(cfg.task, "packing", False):
        raise ConfigError(f"method {method.name!r} feeds a key/value prefix, which disables packed-sequence masks",
                          key="task.packing", fix="set task.packing: false (or use lora)")
    if method.prepends_virtual_tokens and task.per_token_outputs:
        raise ConfigError(f"method {method.name!r} prepends virtual tokens, which shifts per-token outputs",
                          key="method.name", fix=f"use lora, dora, ia3, adapter, freeze or full for {task.name}")


def _check_compatible(cfg: RunConfig, task: Any, method: Any, model_path: str) -> str:
    """Catch config combinations that would only fail mid-run. Returns the early-stopping metric."""
    import json

    method.check_environment()  # this machine (e.g. qlora without CUDA)
    check_method_task(cfg, task, method)
    metric = cfg.training.early_stopping.metric
    metric = (task.training_metric or task.primary_metric) if metric == "auto" else metric.removeprefix("eval_")
    allowed = [*task.metric_names(), "loss"]
    if metric not in allowed:
        raise ConfigError(f"{task.name} does not report {metric!r}", key="training.early_stopping.metric",
                          fix=f"use one of: auto, {', '.join(allowed)}")
    requested = cfg.evaluation.baselines
    unknown = [] if requested == "auto" else [n for n in requested if n not in task.baseline_names]
    if unknown:
        raise ConfigError(f"{task.name} has no baseline {unknown[0]!r}", key="evaluation.baselines",
                          fix=f"use auto, [], or some of: {', '.join(task.baseline_names)}")
    config_file = Path(model_path) / "config.json"
    if config_file.is_file():
        limit = json.loads(config_file.read_text()).get("max_position_embeddings")
        extra = getattr(cfg.method, "num_virtual_tokens", 0)
        if limit and cfg.data.max_length + extra > limit:
            raise ConfigError(f"{cfg.data.max_length} (+{extra} virtual tokens) exceeds the model's {limit} positions",
                              key="data.max_length", fix=f"set data.max_length to at most {limit - extra}")
    return metric


def prepare_data(config: RunConfig | str | Path, overrides: list[str] | None = None) -> Any:
    """Load, validate, clean and split the data of a config; returns PreparedData (with its report)."""
    from tuneforge.data.prepare import prepare_data as _prepare
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS

    cfg = _resolve(config, overrides)
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, cfg.output_dir), cfg.model.trust_remote_code)
    return _prepare(cfg, TASKS.get(cfg.task.name)(cfg.task), tokenizer)


def train(config: RunConfig | str | Path, *, resume: bool = False, overrides: list[str] | None = None,
          console: Any = None, quiet: bool = False, callbacks: list[Any] | None = None) -> RunResult:
    """Prepare data, fine-tune, evaluate against base-model baselines, and record everything in the run folder.
    `callbacks` are extra transformers TrainerCallbacks (a sweep passes its pruning callback)."""
    import torch
    from transformers import set_seed

    from tuneforge.data.prepare import prepare_data as _prepare
    from tuneforge.data.report import render_report
    from tuneforge.evaluation.html import write_html_report
    from tuneforge.evaluation.plots import learning_curve_png
    from tuneforge.evaluation.report import comparison_rows, print_comparison, write_report
    from tuneforge.methods import METHODS, count_parameters
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.registry.artifacts import save_model
    from tuneforge.registry.environment import environment
    from tuneforge.registry.model_card import model_card
    from tuneforge.tasks import TASKS
    from tuneforge.training import fast_path
    from tuneforge.training.trainer import build_trainer

    cfg = _resolve(config, overrides)
    con = _console(console)
    resume_from = _setup(cfg, resume)
    run_dir = cfg.run_dir
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    set_seed(cfg.training.seed)

    model_path = resolve_model_path(cfg.model, cfg.output_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code, cfg.model.revision)
    task = TASKS.get(cfg.task.name)(cfg.task)
    method = METHODS.get(cfg.method.name)(cfg.method)
    metric = _check_compatible(cfg, task, method, model_path)
    task.prepare_tokenizer(tokenizer)
    data = _prepare(cfg, task, tokenizer)
    if resume and (run_dir / "data" / "report.json").is_file():
        saved = read_json(run_dir / "data" / "report.json")["fingerprints"]
        if saved != data.report["fingerprints"]:
            raise DataError("the data changed since this run started (fingerprints differ)",
                            file=str(cfg.data.train), fix="restore the original data, or start a new run")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_config(cfg))
    write_json(run_dir / "data" / "report.json", data.report)
    for name, rows in data.splits.items():
        write_jsonl(run_dir / "data" / f"{name}.jsonl", rows)
    if not quiet:
        render_report(data.report, con)

    labels = data.labels
    fast = fast_path.plan(cfg, task, method, model_path)
    if task.supports_fast_path:
        con.print(fast.summary())
    model = task.build_model(model_path, labels, pad_token_id=tokenizer.pad_token_id,
                             trust_remote_code=cfg.model.trust_remote_code, **_revision(cfg), **method.load_kwargs(),
                             **fast.load_kwargs())
    model = fast_path.apply_before_method(model, fast)
    device = "cuda" if torch.cuda.is_available() and cfg.training.device in ("auto", "cuda") else "cpu"
    write_json(run_dir / "environment.json", environment(device))
    head = task.head_info(model)
    task_facts = task.before_training(model, tokenizer, data.splits, cfg.training.seed, run_dir)
    try:
        model = method.apply(model, head)
    except (ValueError, KeyError) as exc:  # PEFT: target modules that match nothing, bad combinations
        raise ConfigError(f"cannot apply method {method.name!r}: {str(exc).splitlines()[0]}", key="method",
                          fix="check the method's settings (e.g. target_modules) against the model") from None
    model = fast_path.apply_after_method(model, fast, cfg.training.batch_size * cfg.data.max_length)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise ConfigError(f"method {method.name!r} leaves nothing to train for task {task.name!r}", key="method.name",
                          fix="use full, lora, dora, ia3 or adapter")
    con.print(f"method [bold]{method.name}[/bold]: {trainable:,} trainable of {total:,} parameters "
              f"({100 * trainable / total:.2f}%)")
    max_len = cfg.data.max_length
    train_ds = task.encode(data.splits["train"], tokenizer, labels, max_len)
    val_ds = task.encode(data.splits["validation"], tokenizer, labels, max_len)
    weights = task.loss_weights(data.splits["train"], labels) if cfg.training.class_weights else None
    collator, spec = task.collator(tokenizer), task.trainer_spec(cfg)
    if fast.enabled:
        collator.pad_to = fast.bucket
        spec.args_extra.update(bf16=True, activation_checkpointing=fast.gradient_checkpointing
                               or cfg.training.gradient_checkpointing)
    trainer, overfit, stop = build_trainer(cfg, model, tokenizer, train_ds, val_ds, collator,
                                           task.compute_metrics(labels), metric, run_dir / "checkpoints", con, quiet,
                                           weights, loss_only=task.loss_only_eval,
                                           trainer_options=task.trainer_options(), spec=spec,
                                           extra_callbacks=callbacks)
    write_json(run_dir / "run.json", {"status": "training", "started": time.time()})
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        stop.restore_handlers()
    train_seconds = time.perf_counter() - start
    if stop.requested:
        write_json(run_dir / "run.json", {"status": "interrupted", "step": trainer.state.global_step})
        raise RunInterrupted(f"stopped at step {trainer.state.global_step}; a checkpoint was saved in "
                             f"{run_dir / 'checkpoints'}", fix="continue with `tuneforge train CONFIG --resume`")
    model = trainer.model
    history = [dict(h) for h in trainer.state.log_history]
    save_model(run_dir / "model", task, method, model, tokenizer, labels,
               "default" if cfg.model.path == "default" else model_path, max_len)

    eval_bs = cfg.training.eval_batch_size
    with con.status(f"evaluating on {len(data.splits['test'])} test examples"):
        test = task.evaluate(model, tokenizer, data.splits["test"], labels, max_len, eval_bs)
    names = list(task.baseline_names) if cfg.evaluation.baselines == "auto" else cfg.evaluation.baselines
    with con.status(f"measuring base-model baselines ({', '.join(names) or 'none'})"):
        base = task.baselines(model_path, tokenizer, data.splits, labels, max_len, names)
    primary = task.primary_metric
    secondary = "accuracy" if "accuracy" in test.metrics else next(k for k in test.metrics if k != primary)
    rows = comparison_rows(method.name, test, base, primary, secondary, task.ceiling_names)
    print_comparison(rows, primary, secondary, con)

    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = [learning_curve_png(history, metric, plots_dir / "learning_curve.png"),
             *task.plots(test, labels, plots_dir)]
    train_info = {"train_seconds": round(train_seconds, 2), "steps": trainer.state.global_step,
                  "epochs": trainer.state.epoch, "best_step": trainer.state.best_global_step,
                  "best_metric": trainer.state.best_metric, "metric": metric, "trainable_params": trainable,
                  "total_params": total,
                  "overfitting": overfit.events, "resumed_from": str(resume_from) if resume_from else None,
                  "stopped_early": bool(trainer.state.global_step < trainer.state.max_steps), **task_facts}
    if "reference_loss" in test.metrics:
        before = train_info.get("reference_loss_before")
        after = test.metrics["reference_loss"]
        train_info["forgetting"] = {"reference_loss_before": before, "reference_loss_after": after,
                                    "change": after - before if before is not None else None}
    write_json(run_dir / "history.json", history)
    if test.extra.get("samples"):
        before = {s["prompt"]: s["generated"] for s in (base["base_model"].extra.get("samples", [])
                                                         if "base_model" in base else [])}
        write_jsonl(run_dir / "samples.jsonl", [{**s, "base_model": before.get(s["prompt"])}
                                                 for s in test.extra["samples"]])
    write_report(run_dir / "report.md", cfg, rows, primary, secondary, test, base, train_info, data.report, plots)
    write_html_report(run_dir / "report.md")
    card = model_card(cfg, method.library_name, test.metrics, rows, data.report, trainable, total)
    write_text(run_dir / "README.md", card)
    metrics = {"test": test.metrics, "per_class": test.per_class,
               "baselines": {k: v.metrics for k, v in base.items()}, "comparison": rows, "train": train_info,
               "primary_metric": primary}
    write_json(run_dir / "metrics.json", metrics)
    tracking: dict[str, Any] = {}
    if cfg.tracking.mlflow:
        from tuneforge.registry.tracking import log_run

        try:
            tracking = log_run(cfg, run_dir, test.metrics, metrics["baselines"], history)
        except Exception as exc:  # the run itself is complete and recorded on disk; tracking is a mirror
            tracking = {"error": f"{type(exc).__name__}: {exc}"}
            con.print(f"[yellow]warning: MLflow logging failed ({exc}); the run folder is complete[/yellow]")
    write_json(run_dir / "run.json", {"status": "finished", "finished": time.time(), "tracking": tracking})
    con.print(f"report: {run_dir / 'report.md'}")
    return RunResult(run_dir, test.metrics, metrics["baselines"], rows, train_info, tracking)


@dataclass
class Run:
    """A finished run read back from its folder (never from a live trainer)."""

    path: Path
    config: RunConfig
    metrics: dict[str, Any]
    _loaded: Any = None

    def model(self, device: str = "cpu") -> Any:
        from tuneforge.registry.artifacts import load_model

        if self._loaded is None:
            self._loaded = load_model(self.path / "model", device)
        return self._loaded

    def predict(self, texts: list[Any], batch_size: int = 64) -> list[dict[str, Any]]:
        return self.model().predict(texts, batch_size)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise RunError(f"{path} is not a run folder (no config.yaml)", fix="see `tuneforge runs list`")
    if not (path / "metrics.json").is_file():
        raise RunError(f"run {path} has not finished", fix=f"resume it: tuneforge train {path}/config.yaml --resume")
    return Run(path, load_config(path / "config.yaml"), read_json(path / "metrics.json"))


def predict(run: str | Path | Run, texts: list[Any]) -> list[dict[str, Any]]:
    return (run if isinstance(run, Run) else load_run(run)).predict(texts)


def predict_file(run: str | Path | Run, in_file: str | Path) -> list[dict[str, Any]]:
    """Predict every record of a data file (any supported format); returns the records with a `prediction`."""
    from tuneforge.data.sources import read_records

    loaded = run if isinstance(run, Run) else load_run(run)
    columns, task = loaded.config.data.columns, loaded.config.task.name
    key = columns.tokens if task == "token_classification" else columns.text
    pair = columns.text_pair if task != "token_classification" else None
    records, inputs = [], []
    for raw, src, line in read_records(str(in_file), "auto", task):
        for needed in [key] + ([pair] if pair else []):
            if needed not in raw or raw[needed] in (None, "", []):
                raise DataError(f"missing or empty '{needed}'", file=src, line=line,
                                fix=f"give every record a '{needed}' (the model was trained with it)")
        records.append(raw)
        inputs.append((raw[key], raw[pair]) if pair else raw[key])
    return [{**r, "prediction": p} for r, p in zip(records, loaded.predict(inputs), strict=True)]
