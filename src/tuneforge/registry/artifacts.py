"""Save and load a trained model: what the method trained, the tokenizer, labels and how to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError
from tuneforge.methods.base import METHODS, Method
from tuneforge.registry.files import read_json, write_json
from tuneforge.tasks.base import TASKS, Task

META = "tuneforge.json"


@dataclass
class LoadedModel:
    task: Task
    method: Method
    model: Any
    tokenizer: Any
    labels: list[str]
    max_length: int
    meta: dict[str, Any]

    def predict(self, texts: list[Any], batch_size: int = 64) -> list[dict[str, Any]]:
        return self.task.predict(self.model, self.tokenizer, texts, self.labels, self.max_length, batch_size)


def save_model(out_dir: Path, task: Task, method: Method, model: Any, tokenizer: Any, labels: list[str],
               base_model: str, max_length: int, base_revision: str | None = None,
               trust_remote_code: bool = False) -> Path:
    """Write into a staging folder, then rename: a reader never sees half a model."""
    import shutil

    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if task.saves_whole_model:
        task.save_trained(model, method, staging)
    else:
        method.save(model, staging, task.head_info(_unwrap(model)))
    tokenizer.save_pretrained(str(staging))
    write_json(staging / META, {"task": task.params.model_dump(), "method": method.params.model_dump(),
                                "labels": labels, "base_model": base_model, "max_length": max_length,
                                # an adapter is only valid on the exact base it trained on
                                "base_revision": base_revision, "trust_remote_code": trust_remote_code})
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir


def _unwrap(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (head names are looked up on it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def load_model(model_dir: Path, device: str = "cpu") -> LoadedModel:
    from tuneforge.models.loading import load_tokenizer

    meta_path = model_dir / META
    if not meta_path.is_file():
        raise RunError(f"{model_dir} holds no trained model ({META} missing)",
                       fix="give a finished run folder (see `tuneforge runs list`)")
    meta = read_json(meta_path)
    task_cls = TASKS.get(meta["task"]["name"])
    method_cls = METHODS.get(meta["method"]["name"])
    task = task_cls(task_cls.Params.model_validate(meta["task"]))
    method = method_cls(method_cls.Params.model_validate(meta["method"]))
    remote = bool(meta.get("trust_remote_code", False))
    tokenizer = load_tokenizer(str(model_dir), remote)
    labels = meta["labels"]
    same_base = {"trust_remote_code": remote, **({"revision": meta["base_revision"]}
                                                  if meta.get("base_revision") else {})}
    if task.saves_whole_model:
        model = task.load_trained(model_dir, device)
    elif method.partial:
        base_path = meta["base_model"]
        if base_path == "default":  # stored by name, so the run survives a new venv or a moved folder
            from tuneforge.models.loading import default_model_path

            base_path = str(default_model_path())
        import torch

        # Quantised bases (qlora) need a GPU; on CPU the adapters run on the full-precision base.
        extra = method.load_kwargs() if torch.cuda.is_available() else {}
        base = task.build_model(base_path, labels, pad_token_id=tokenizer.pad_token_id, **same_base, **extra)
        model = method.load(base, model_dir, task.head_info(base))
    else:
        model = task.build_model(str(model_dir), labels, pad_token_id=tokenizer.pad_token_id,
                                 trust_remote_code=remote)
    model.to(device).eval()
    return LoadedModel(task, method, model, tokenizer, labels, meta["max_length"], meta)
