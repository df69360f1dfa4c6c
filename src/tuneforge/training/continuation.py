"""Continue training from a finished run (`model.from_run`): the starting weights are the run's, not the base's.

- A full fine-tune (or any method that saved the whole model) starts from its saved model folder; the new run's
  method applies to it as to any base (full keeps training every weight, lora adds a fresh adapter over it).
- An adapter run (lora, dora, ia3, adapter, freeze, ...) starts from the same base with its saved adapter and head,
  which keep training (`Method.load_for_training`); the new run must use the same method and settings.
- The labels, and so the head, are the parent's: `data.labels` is set to them, so data with a label the parent
  never had stops at that record with the file and line. Extending a trained head with new classes is not done:
  train from the base instead (`tuneforge retrain --from-base`).

The resolved config records the parent (model.from_run) and the base it implies (model.path): config_parent.py, at
config time. This module is the build-time half; the run's environment.json records the parent's lineage
(`base_model.parent_run`).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config import RunConfig
from tuneforge.config_parent import with_parent_run  # noqa: F401 - the config-time half, importable from here too
from tuneforge.errors import ConfigError, RunError

KEY = "model.from_run"


def parent_run(cfg: RunConfig) -> Any:
    """The finished run `model.from_run` names (a registry LoadedRun); a clear error when it is not one."""
    from tuneforge.registry.loaded_run import load_run

    try:
        return load_run(cfg.model.from_run or "")
    except RunError as exc:
        raise ConfigError(exc.message, key=KEY, fix=exc.fix or "give a finished run folder") from None


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
