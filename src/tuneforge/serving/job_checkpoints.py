"""Servable checkpoints: each checkpoint a job saves is also written as a small finished run folder,
WORKSPACE/{job id}.ckpt-{step}/ (the model as the run would save it, the run's config, a metrics.json saying which
step it is, and job.json with its model id), so the server answers chat/completions for
`ft:...:{job id}:ckpt-step-{step}` like any run, while the job trains on or after it was cancelled.

The newest KEEP of a job's servable checkpoints are kept (as OpenAI keeps the last three); older ones are removed.
The trainer's own checkpoints (for resuming) are separate and follow `training.save_total_limit`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from tuneforge.registry.files import read_json, write_json, write_text

KEEP = 3


def checkpoint_folder(run_dir: Path, step: int) -> Path:
    return run_dir.parent / f"{run_dir.name}.ckpt-{step}"


def publish_checkpoint(cfg: Any, model: Any, tokenizer: Any, step: int, model_id: str,
                       metrics: dict[str, Any]) -> Path:
    """Write the servable run folder of the checkpoint at `step` (atomic: the model folder is renamed into place
    and metrics.json, which makes it a finished run, comes last)."""
    from tuneforge.config import dump_config
    from tuneforge.methods import METHODS
    from tuneforge.models.loading import resolve_model_path
    from tuneforge.registry.artifacts import save_model
    from tuneforge.tasks import TASKS

    run_dir = cfg.run_dir
    folder = checkpoint_folder(run_dir, step)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    report = run_dir / "data" / "report.json"
    labels = list(read_json(report).get("labels") or []) if report.is_file() else []
    base = "default" if cfg.model.path == "default" else resolve_model_path(cfg.model, cfg.output_dir)
    task, method = TASKS.get(cfg.task.name)(cfg.task), METHODS.get(cfg.method.name)(cfg.method)
    save_model(folder / "model", task, method, model, tokenizer, labels, base, cfg.data.max_length,
               cfg.model.revision, cfg.model.trust_remote_code)
    write_text(folder / "config.yaml", dump_config(cfg))
    write_json(folder / "job.json", {"fine_tuned_model": model_id, "job": run_dir.name, "step": step})
    write_json(folder / "metrics.json", {"test": {}, "train": {"steps": step, **metrics},
                                         "checkpoint": {"job": run_dir.name, "step": step}})
    _prune(run_dir)
    return folder


def _prune(run_dir: Path) -> None:
    pattern = re.compile(re.escape(run_dir.name) + r"\.ckpt-(\d+)$")
    found = sorted((int(m.group(1)), p) for p in run_dir.parent.iterdir() if (m := pattern.match(p.name)))
    for _, old in found[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
