"""Continue training from a finished run (`model.from_run`): the starting weights are the run's, not the base's.

- A full fine-tune (or any method that saved the whole model) starts from its saved model folder; the new run's
  method applies to it as to any base (full keeps training every weight, lora adds a fresh adapter over it).
- An adapter run (lora, dora, ia3, adapter, freeze, ...) starts from the same base with its saved adapter and head,
  which keep training (`Method.load_for_training`); the new run must use the same method and settings.
- The labels, and so the head, are the parent's: `data.labels` is set to them, so data with a label the parent
  never had stops at that record with the file and line. Extending a trained head with new classes is not done:
  train from the base instead (`tuneforge retrain --from-base`).

The resolved config records the parent (model.from_run) and the base it implies (model.path), and the run's
environment.json records the parent's lineage (`base_model.parent_run`).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config import RunConfig
from tuneforge.errors import ConfigError, RunError

KEY = "model.from_run"


def parent_run(cfg: RunConfig) -> Any:
    """The finished run `model.from_run` names (a registry LoadedRun); a clear error when it is not one."""
    from tuneforge.registry.loaded_run import load_run

    try:
        return load_run(cfg.model.from_run or "")
    except RunError as exc:
        raise ConfigError(exc.message, key=KEY, fix=exc.fix or "give a finished run folder") from None


def _check_compatible(cfg: RunConfig, parent: Any) -> None:
    if cfg.task.name != parent.task.name:
        raise ConfigError(f"the run {parent.path} is a {parent.task.name} run; this config trains {cfg.task.name}",
                          key=KEY, fix=f"set task.name: {parent.task.name}, or continue from a {cfg.task.name} run")
    if parent.task.saves_whole_model:
        raise ConfigError(f"continuing a {parent.task.name} run is not supported (it saves a whole "
                          f"sentence-transformers folder)", key=KEY,
                          fix=f"set model.path: {parent.model_dir} to start a new run from its weights")
    head_fields = ("multi_label",)  # settings that change the head's shape or loss
    for name in head_fields:
        if getattr(cfg.task, name, None) != getattr(parent.task.params, name, None):
            raise ConfigError(f"task.{name} differs from the run continued ({getattr(parent.task.params, name)})",
                              key=f"task.{name}", fix="keep the parent's task settings")
    if parent.is_adapter:
        mine, theirs = cfg.method.model_dump(), parent.method.params.model_dump()
        if mine != theirs:
            diff = next((k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)), "name")
            raise ConfigError(f"the run continued trained {parent.method.name} adapters with other settings "
                              f"({diff}: {theirs.get(diff)!r}, here {mine.get(diff)!r})", key=f"method.{diff}",
                              fix="use the parent's method settings (its adapter keeps training)")


def with_parent_run(cfg: RunConfig) -> RunConfig:
    """The config with the base model and labels the parent run implies (called by `resolve_config`)."""
    parent = parent_run(cfg)
    _check_compatible(cfg, parent)
    pm = parent.config.model
    base = pm.path if parent.is_adapter else str(parent.model_dir)
    if cfg.model.path not in ("default", pm.path, base):
        raise ConfigError(f"model.path {cfg.model.path!r} and model.from_run both name a starting model", key=KEY,
                          fix="leave model.path out: the run continued brings its own base")
    model = cfg.model.model_copy(update={"path": base, "revision": pm.revision if parent.is_adapter else None,
                                         "trust_remote_code": pm.trust_remote_code})
    update: dict[str, Any] = {"model": model}
    if parent.labels:
        if cfg.data.labels is not None and list(cfg.data.labels) != parent.labels:
            raise ConfigError("data.labels differ from the labels of the run continued (its head has "
                              f"{len(parent.labels)}: {', '.join(parent.labels[:8])}"
                              f"{' ...' if len(parent.labels) > 8 else ''})", key="data.labels",
                              fix="leave data.labels out, or train from the base (drop model.from_run) to "
                                  "change the labels")
        update["data"] = cfg.data.model_copy(update={"labels": list(parent.labels)})
    return cfg.model_copy(update=update)


def parent_lineage(parent: Any) -> dict[str, Any]:
    """What a continued run records about the run it started from."""
    from tuneforge.registry.run_folder import read_status

    tracking = read_status(parent.path).get("tracking") or {}
    return {"path": str(parent.path), "name": parent.name, "method": parent.method.name,
            "adapter": bool(parent.is_adapter), "mlflow_run_id": tracking.get("run_id"),
            "registered_model": tracking.get("registered_model"),
            "base_model": parent.meta.get("base_model")}


def check_labels(parent: Any, labels: list[str]) -> None:
    """The prepared data's labels are the parent's, in its order (the head's rows)."""
    if parent.labels and list(labels) != parent.labels:
        raise ConfigError("the data's labels differ from the labels of the run continued", key="data.labels",
                          fix="continue with the parent's labels, or train from the base (drop model.from_run)")


def start_model(recipe: Any, model: Any, head: Any, before_method: Any = None) -> Any:
    """The trainable model a continued run starts from: the parent's adapter (and head) on the freshly built base,
    still training; a whole-model parent was already loaded as the base, so the method applies as usual.
    `before_method` (the task's before-training measurement) sees the parent's weights, as a fresh run's sees the
    base: "before" is before this run's training."""
    parent = recipe.parent
    if parent.is_adapter:
        model = recipe.method.load_for_training(model, parent.model_dir, head)
        if before_method is not None:
            before_method(model)
        return model
    if before_method is not None:
        before_method(model)
    return recipe.task.apply_method(recipe.method, model, head)
