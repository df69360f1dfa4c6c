"""A fine-tuning job's body becomes a normal tuneforge config (the run is the job's run folder in the workspace).

What OpenAI's fields mean here:
- `model`: a base model of the workspace catalogue (`tuneforge models add NAME PATH`), `default` (the bundled
  MiniLM), or a finished run to continue training from (`model.from_run`): its folder name, a job's `ft:` id or a
  checkpoint's `ft:...:ckpt-step-N` id;
- `training_file` / `validation_file`: ids of the Files API (`data.train` / `data.validation`);
- `method.type`: `supervised` -> task `sft`; `dpo` -> task `preference` with algorithm `dpo` and its `beta`;
- `hyperparameters`: `n_epochs` -> training.epochs, `batch_size` -> training.batch_size,
  `learning_rate_multiplier` -> training.learning_rate = multiplier x the method's default learning rate;
  each `"auto"` keeps tuneforge's default;
- `seed` -> training.seed.

A tuneforge extension: the body may carry `tuneforge: {...}`, a (partial) tuneforge config merged over the one built
from those fields, for any task and method (a classifier, NER, LoRA or full fine-tune). The server decides where runs
live and what they read, so the extension may not set the run name, output folder, plug-ins, model path, data files,
or anything that downloads or runs remote code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.registry.loaded_run import LoadedRun

FT_PREFIX = "ft:"
# keys of the tuneforge extension that only the server sets (each with the job field that sets it instead)
FORBIDDEN = {"name": "the job id names the run", "output_dir": "runs live in the server's workspace",
             "plugins": "plug-in code is not loaded from requests", "model.path": "use `model`",
             "model.from_run": "name the run (or its ft: id) in `model`",
             "model.allow_hub": "the server does not download models", "model.trust_remote_code": "not from requests",
             "data.train": "use `training_file`", "data.validation": "use `validation_file`",
             "data.test": "upload it and use `validation_file`, or let tuneforge split the training file",
             "tracking.tracking_uri": "the server's MLflow store records every job", "compare": "not a job field",
             "sweep": "not a job field"}


class JobInputError(TuneforgeError):
    """A job field that cannot work: names the field (`param`) and a machine-readable `code`."""

    def __init__(self, message: str, *, param: str | None, code: str = "invalid_value",
                 fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.param, self.code = param, code


@dataclass
class NamedRun(LoadedRun):
    """A finished run served under another name: a job's `ft:` id (or one of its checkpoints' ids)."""

    served_name: str = ""

    @property
    def name(self) -> str:
        return self.served_name or self.path.name


def served_as(run: LoadedRun, name: str) -> LoadedRun:
    return NamedRun(path=run.path, config=run.config, metrics=run.metrics, meta=run.meta, served_name=name)


JOB_RECORD = "job.json"  # in a job's run folder: {"fine_tuned_model": ...}, the name the server answers to


def served_name(folder: Path) -> str | None:
    """The model id a run folder is served under when a job made it (None: its folder name)."""
    from tuneforge.registry.files import read_json

    record = folder / JOB_RECORD
    if not record.is_file():
        return None
    try:
        return str(read_json(record)["fine_tuned_model"])
    except (KeyError, ValueError, OSError):
        return None


def fine_tuned_name(base: str, org: str, suffix: str | None, job_id: str) -> str:
    """`ft:{base}:{org}:{suffix}:{id}` as OpenAI writes it (an empty suffix leaves `::`); a job continuing from a
    fine-tuned model keeps that model's base."""
    if base.startswith(FT_PREFIX):
        base = base.split(":")[1]
    return f"{FT_PREFIX}{base}:{org}:{suffix or ''}:{job_id}"


def org_of(key_name: str) -> str:
    """The organisation part of `ft:` ids: the creating key's name, in id-safe characters."""
    return re.sub(r"[^a-z0-9-]+", "-", key_name.lower()).strip("-") or "tuneforge"


# ---- the seams to the Files API and the base-model catalogue ---------------------------------------------


def file_path(workspace: Path, file_id: str, param: str) -> Path:
    """The stored file behind a Files API id (JobInputError naming `param` when there is none or it failed
    validation)."""
    from tuneforge.serving.file_store import FileNotUsable, FileStore, UnknownFile

    store = FileStore(workspace)
    try:
        store.require_usable(file_id, param)
        return Path(store.path_of(file_id, param))
    except UnknownFile as exc:
        raise JobInputError(f"{param}: {exc}", param=param, code="file_not_found") from None
    except FileNotUsable as exc:
        raise JobInputError(f"{param}: {exc}", param=param, code="invalid_file") from None


def base_model(workspace: Path, name: str) -> str:
    """The path (or `default`) of a catalogue base model."""
    if name == "default":
        return "default"
    from tuneforge.registry.base_models import resolve_base

    try:
        return str(resolve_base(workspace, name))
    except TuneforgeError as exc:
        raise JobInputError(str(exc), param="model", code="model_not_found") from None


def finished_run(workspace: Path, name: str) -> Path | None:
    """The folder of a finished run named by its folder name, a job's `ft:` id or a checkpoint's
    `ft:...:ckpt-step-N` id; None when there is none."""
    if name.startswith(FT_PREFIX):
        parts = name.split(":")
        step = re.fullmatch(r"ckpt-step-(\d+)", parts[-1])
        job_id = parts[-2] if step else parts[-1]
        if not re.fullmatch(r"ftjob-[0-9a-f]+", job_id):
            return None
        folder = workspace / (f"{job_id}.ckpt-{step.group(1)}" if step else job_id)
        return folder if (folder / "metrics.json").is_file() and served_name(folder) == name else None
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and (workspace / name / "metrics.json").is_file():
        return workspace / name
    return None


# ---- body -> config --------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("task", "method"):
            out[key] = _merge(out[key], value)
        elif key in ("task", "method") and isinstance(out.get(key), dict) and isinstance(value, dict) \
                and value.get("name", out[key].get("name")) == out[key].get("name"):
            out[key] = {**out[key], **value}  # same task: refine it; another task replaces it whole
        else:
            out[key] = value
    return out


def _check_extension(extra: Any) -> None:
    if not isinstance(extra, dict):
        raise JobInputError("tuneforge must be an object (a tuneforge run config, in part)", param="tuneforge")
    for dotted, why in FORBIDDEN.items():
        node: Any = extra
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise JobInputError(f"tuneforge.{dotted} cannot be set in a job ({why})", param=f"tuneforge.{dotted}")


def build_config(workspace: Path, job_id: str, body: dict[str, Any]) -> Any:
    """The RunConfig of a job (validated); JobInputError naming the field when it cannot work."""
    from tuneforge.config import parse_config
    from tuneforge.errors import ConfigError

    workspace = workspace.resolve()
    extra = body.get("tuneforge") or {}
    _check_extension(extra)  # before any file or model is looked up
    method = body.get("method") or {"type": "supervised"}
    hyper = job_hyperparameters(body)
    task: dict[str, Any] = {"name": "sft"}
    if method["type"] == "dpo":
        task = {"name": "preference", "algorithm": "dpo"}
        if hyper.get("beta", "auto") != "auto":
            task["beta"] = float(hyper["beta"])
    raw: dict[str, Any] = {"name": job_id, "output_dir": str(workspace), "task": task,
                           "model": _model_section(workspace, body["model"]),
                           "data": {"train": str(file_path(workspace, body["training_file"], "training_file"))}}
    if body.get("validation_file"):
        raw["data"]["validation"] = str(file_path(workspace, body["validation_file"], "validation_file"))
    training: dict[str, Any] = {}
    if hyper.get("n_epochs", "auto") != "auto":
        training["epochs"] = float(hyper["n_epochs"])
    if hyper.get("batch_size", "auto") != "auto":
        training["batch_size"] = int(hyper["batch_size"])
    if body.get("seed") is not None:
        training["seed"] = int(body["seed"])
    raw["training"] = training
    raw = _merge(raw, extra)
    try:
        cfg = parse_config(raw, source="the job body")
    except ConfigError as exc:
        key = getattr(exc, "key", None)
        raise JobInputError(str(exc), param=f"tuneforge.{key}" if key else "tuneforge", code="invalid_config") \
            from None
    task_extra = extra.get("task") if isinstance(extra.get("task"), dict) else {}
    for name in cfg.task.path_fields:
        if task_extra.get(name):
            raise JobInputError(f"tuneforge.task.{name} names a path on the server; not from requests",
                                param=f"tuneforge.task.{name}")
    if cfg.model.from_run:
        _check_continuation(cfg)
    multiplier = hyper.get("learning_rate_multiplier", "auto")
    if multiplier != "auto":
        lr = cfg.learning_rate() * float(multiplier)
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"learning_rate": lr})})
    return cfg


def _model_section(workspace: Path, model: str) -> dict[str, Any]:
    """`model.path` of a catalogue base (or `default`), else `model.from_run` of a finished run (continue it)."""
    from tuneforge.registry.base_models import is_base

    run = None if is_base(workspace, model) else finished_run(workspace, model)
    return {"from_run": str(run)} if run is not None else {"path": base_model(workspace, model)}


def _check_continuation(cfg: Any) -> None:
    """A continued run must match its parent (task, adapter settings, labels): checked now, not by the worker."""
    from tuneforge.errors import ConfigError
    from tuneforge.training.continuation import with_parent_run

    try:
        with_parent_run(cfg)
    except ConfigError as exc:
        key = getattr(exc, "key", None)
        raise JobInputError(str(exc), param="model" if key in (None, "model.from_run") else f"tuneforge.{key}",
                            code="invalid_model") from None


def job_hyperparameters(body: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a job asked for: the method's own block, else the top-level (older) field."""
    method = body.get("method") or {}
    kind = method.get("type", "supervised")
    own = ((method.get(kind) or {}).get("hyperparameters")) or {}
    return {**(body.get("hyperparameters") or {}), **own}
