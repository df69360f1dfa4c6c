"""The one builder: a config becomes what trains (tokenizer, task, method, model with the method and fast path applied).

`train`, `plan --dry-run` and every later stage that trains (jobs, multi-process launches) use these two steps, so a
fix to how a model is built lands everywhere at once:

1. `resolve(cfg)`: no weights yet. Tokenizer, task and method objects, every config check that can fail before
   loading (method x task x machine), and the early-stopping metric.
2. `build(recipe, labels)`: loads the base with the task's head, applies the fast path and the method.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.errors import ConfigError


@dataclass
class Recipe:
    """What a config resolves to before any weights are loaded."""

    cfg: RunConfig
    model_path: str
    tokenizer: Any
    task: Any
    method: Any
    metric: str  # the validation metric early stopping follows
    base_lineage: dict[str, Any]  # where the base model came from (e.g. a GGUF file's sha256)
    parent: Any = None  # model.from_run: the finished run (LoadedRun) this one continues (training/continuation.py)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every load of this run's base model gets (revision, remote code)."""
        cfg = self.cfg.model
        return {"trust_remote_code": cfg.trust_remote_code, **({"revision": cfg.revision} if cfg.revision else {})}


@dataclass
class Built:
    """A model ready to train, and what the run records about it."""

    model: Any
    fast: Any  # training/fast_path.FastPath: what the GPU fast path decided
    head: Any  # methods.base.HeadInfo
    trainable: int
    total: int


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


def early_stopping_metric(cfg: RunConfig, task: Any) -> str:
    metric = cfg.training.early_stopping.metric
    metric = (task.training_metric or task.primary_metric) if metric == "auto" else metric.removeprefix("eval_")
    allowed = [*task.metric_names(), "loss"]
    if metric not in allowed:
        raise ConfigError(f"{task.name} does not report {metric!r}", key="training.early_stopping.metric",
                          fix=f"use one of: auto, {', '.join(allowed)}")
    return metric


def _check_baselines_and_length(cfg: RunConfig, task: Any, model_path: str) -> None:
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


def _check_sharding(cfg: RunConfig) -> None:
    import importlib.util

    import torch

    from tuneforge.training.distributed import sharding_arguments

    cuda = torch.cuda.is_available() and cfg.training.device in ("auto", "cuda")
    sharding_arguments(cfg.training.sharding, cuda, importlib.util.find_spec("deepspeed") is not None)


def resolve(cfg: RunConfig, *, check_machine: bool = True) -> Recipe:
    """Tokenizer, task, method and every check that can fail before weights load (the machine's too, unless a
    planner asks about other hardware)."""
    from tuneforge.methods import METHODS
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS

    model_path = resolve_model_path(cfg.model, cfg.output_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code, cfg.model.revision)
    task = TASKS.get(cfg.task.name)(cfg.task)
    method = METHODS.get(cfg.method.name)(cfg.method)
    if check_machine:
        method.check_environment()  # this machine (e.g. qlora without CUDA)
        _check_sharding(cfg)
    check_method_task(cfg, task, method)
    metric = early_stopping_metric(cfg, task)
    _check_baselines_and_length(cfg, task, model_path)
    task.prepare_tokenizer(tokenizer)
    lineage, parent = base_lineage(cfg, model_path), None
    if cfg.model.from_run:
        from tuneforge.training import continuation

        parent = continuation.parent_run(cfg)
        lineage["parent_run"] = continuation.parent_lineage(parent)
    return Recipe(cfg, model_path, tokenizer, task, method, metric, lineage, parent)


def build(recipe: Recipe, labels: list[str], *, tokens_per_step: int | None = None,
          before_method: Callable[[Any], None] | None = None) -> Built:
    """Load the base with the task's head, then the fast path and the method. `before_method(model)` sees the
    plain base (e.g. to measure it on a reference set before training changes it)."""
    from tuneforge.methods import count_parameters
    from tuneforge.training import fast_path

    cfg, task, method = recipe.cfg, recipe.task, recipe.method
    fast = fast_path.decide(cfg, task, method, recipe.model_path)
    model = task.build_model(recipe.model_path, labels, pad_token_id=recipe.tokenizer.pad_token_id,
                             **recipe.load_kwargs(), **_merged_load_kwargs(method, fast))
    model = fast_path.apply_before_method(model, fast)
    head = task.head_info(model)
    if recipe.parent is not None:  # continuing a run: `before_method` sees the parent's weights, before training
        from tuneforge.training import continuation

        continuation.check_labels(recipe.parent, labels)
    elif before_method is not None:
        before_method(model)
    try:
        model = (task.apply_method(method, model, head) if recipe.parent is None
                 else continuation.start_model(recipe, model, head, before_method))
    except (ValueError, KeyError) as exc:  # PEFT: target modules that match nothing, bad combinations
        raise ConfigError(f"cannot apply method {method.name!r}: {str(exc).splitlines()[0]}", key="method",
                          fix="check the method's settings (e.g. target_modules) against the model") from None
    tokens = tokens_per_step or cfg.training.batch_size * cfg.data.max_length
    model = fast_path.apply_after_method(model, fast, tokens)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise ConfigError(f"method {method.name!r} leaves nothing to train for task {task.name!r}", key="method.name",
                          fix="use full, lora, dora, ia3 or adapter")
    return Built(model, fast, head, trainable, total)


def base_lineage(cfg: RunConfig, model_path: str) -> dict[str, Any]:
    """What the run records about its base model, so an adapter is never reloaded onto another base."""
    from tuneforge.models.gguf import gguf_lineage

    return {"path": cfg.model.path, "resolved": model_path, "revision": cfg.model.revision,
            "trust_remote_code": cfg.model.trust_remote_code,
            **({"gguf": gguf} if (gguf := gguf_lineage(cfg.model.path, cfg.output_dir)) else {})}


def _merged_load_kwargs(method: Any, fast: Any) -> dict[str, Any]:
    """The method's and the fast path's load arguments together; where both set one (qlora and the fast path both
    ask for a dtype), they must agree, else passing both would fail inside from_pretrained."""
    merged = dict(method.load_kwargs())
    for key, value in fast.load_kwargs().items():
        if key in merged and merged[key] != value:
            raise ConfigError(f"the method and the fast path disagree on {key!r} ({merged[key]} vs {value})",
                              key="training.fast_path", fix="set training.fast_path: off, or use lora")
        merged[key] = value
    return merged


def trainer_parts(recipe: Recipe, built: Built) -> tuple[Any, Any]:
    """The task's collator and trainer spec with the fast path's settings applied."""
    cfg = recipe.cfg
    collator, spec = recipe.task.collator(recipe.tokenizer), recipe.task.trainer_spec(cfg)
    if built.fast.enabled:
        collator.pad_to = built.fast.bucket
        spec.args_extra.update(bf16=True, activation_checkpointing=built.fast.gradient_checkpointing
                               or cfg.training.gradient_checkpointing)
    return collator, spec
