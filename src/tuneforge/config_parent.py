"""`model.from_run` at config time: the base model and the labels a continued run takes from its parent.

Read from the parent's files (config.yaml, model/tuneforge.json) without the registry's run loader, which itself
reads configs: `config_resolve.resolve_config` calls this, so it must not import back into the config's importers.
The build-time half (loading the parent's weights) is training/continuation.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import ConfigError
from tuneforge.methods import METHODS
from tuneforge.tasks import TASKS

KEY = "model.from_run"


def _read_parent(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the parent's saved config, its model description); a clear error when it is not a finished run."""
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path} is not a run folder (no config.yaml)", key=KEY,
                          fix="give a finished run folder (see `tuneforge runs list`)")
    if not (path / "metrics.json").is_file() or not (path / "model" / "tuneforge.json").is_file():
        raise ConfigError(f"run {path} has not finished", key=KEY,
                          fix=f"finish it first: tuneforge train {path}/config.yaml --resume")
    raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    return raw, json.loads((path / "model" / "tuneforge.json").read_text(encoding="utf-8"))


def is_adapter_run(meta: dict[str, Any]) -> bool:
    """As LoadedRun.is_adapter: the run saved only what its method trained, over an unchanged base."""
    return bool(METHODS.get(meta["method"]["name"]).partial) and not TASKS.get(meta["task"]["name"]).saves_whole_model


def _check_compatible(cfg: Any, path: Path, meta: dict[str, Any]) -> None:
    task = meta["task"]["name"]
    if cfg.task.name != task:
        raise ConfigError(f"the run {path} is a {task} run; this config trains {cfg.task.name}", key=KEY,
                          fix=f"set task.name: {task}, or continue from a {cfg.task.name} run")
    if TASKS.get(task).saves_whole_model:
        raise ConfigError(f"continuing a {task} run is not supported (it saves a whole sentence-transformers "
                          "folder)", key=KEY, fix=f"set model.path: {path / 'model'} to start a new run from it")
    for name in ("multi_label",):  # settings that change the head's shape or loss
        if getattr(cfg.task, name, None) != meta["task"].get(name):
            raise ConfigError(f"task.{name} differs from the run continued ({meta['task'].get(name)})",
                              key=f"task.{name}", fix="keep the parent's task settings")
    if is_adapter_run(meta):
        mine, theirs = cfg.method.model_dump(), dict(meta["method"])
        if mine != theirs:
            diff = next((k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)), "name")
            raise ConfigError(f"the run continued trained {theirs['name']} adapters with other settings "
                              f"({diff}: {theirs.get(diff)!r}, here {mine.get(diff)!r})", key=f"method.{diff}",
                              fix="use the parent's method settings (its adapter keeps training)")


def with_parent_run(cfg: Any) -> Any:  # a RunConfig (not imported: config.py imports this)
    """The config with the base model and labels the parent run implies (called by `resolve_config`)."""
    path = Path(cfg.model.from_run or "")
    raw, meta = _read_parent(path)
    _check_compatible(cfg, path, meta)
    pm = raw.get("model") or {}
    parent_path = pm.get("path", "default")
    adapter = is_adapter_run(meta)
    base = parent_path if adapter else str(path / "model")
    if cfg.model.path not in ("default", parent_path, base):
        raise ConfigError(f"model.path {cfg.model.path!r} and model.from_run both name a starting model", key=KEY,
                          fix="leave model.path out: the run continued brings its own base")
    model = cfg.model.model_copy(update={"path": base, "revision": pm.get("revision") if adapter else None,
                                         "trust_remote_code": bool(pm.get("trust_remote_code", False))})
    update: dict[str, Any] = {"model": model}
    labels = list(meta.get("labels") or [])
    if labels:
        if cfg.data.labels is not None and list(cfg.data.labels) != labels:
            raise ConfigError(f"data.labels differ from the labels of the run continued (its head has "
                              f"{len(labels)}: {', '.join(labels[:8])}{' ...' if len(labels) > 8 else ''})",
                              key="data.labels", fix="leave data.labels out, or train from the base (drop "
                                                     "model.from_run) to change the labels")
        update["data"] = cfg.data.model_copy(update={"labels": labels})
    return cfg.model_copy(update=update)
