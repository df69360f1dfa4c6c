"""Everything a training run writes into its folder, in one place: the folder is the unit of truth.

Layout: config.yaml, data/ (report.json and the prepared splits), environment.json, run.json (status), checkpoints/,
model/, history.json, samples.jsonl, plots/, report.md/html, README.md (model card), metrics.json.
Every write is atomic (registry/files.py), so a reader never sees half a file.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig, dump_config, load_config, with_absolute_paths
from tuneforge.errors import ConfigError, DataError, RunError
from tuneforge.registry.files import read_json, write_json, write_jsonl, write_text


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return prefix.rstrip(".") if a != b else None


def open_run_folder(cfg: RunConfig, resume: bool) -> Path | None:
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


def write_prepared(cfg: RunConfig, data: Any, resumed: bool) -> None:
    """The config and the prepared data; on resume, refuse data that changed since the run started."""
    run_dir = cfg.run_dir
    report_file = run_dir / "data" / "report.json"
    if resumed and report_file.is_file() and read_json(report_file)["fingerprints"] != data.report["fingerprints"]:
        raise DataError("the data changed since this run started (fingerprints differ)",
                        file=str(cfg.data.train), fix="restore the original data, or start a new run")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_config(cfg))
    write_json(report_file, data.report)
    for name, rows in data.splits.items():
        write_jsonl(run_dir / "data" / f"{name}.jsonl", rows)


def set_status(run_dir: Path, status: str, **facts: Any) -> None:
    """run.json: training | interrupted | failed | finished (what `runs list` shows); rank 0 alone writes it."""
    from tuneforge.training.distributed import is_main

    if not is_main():
        return
    write_json(run_dir / "run.json", {"status": status, "time": time.time(), **facts})


def mark_failed(run_dir: Path, exc: BaseException) -> None:
    """A crash leaves a record saying so (the checkpoints stay for --resume)."""
    from tuneforge.training.distributed import is_main

    if run_dir.is_dir() and is_main():
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f"{last[0].filename}:{last[0].lineno}" if last else ""
        set_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}", where=where)


def read_status(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return read_json(path) if path.is_file() else {}


def write_history(run_dir: Path, history: list[dict[str, Any]], test: Any, base: dict[str, Any]) -> None:
    write_json(run_dir / "history.json", history)
    if test.extra.get("samples"):
        before = {s["prompt"]: s["generated"] for s in (base["base_model"].extra.get("samples", [])
                                                         if "base_model" in base else [])}
        write_jsonl(run_dir / "samples.jsonl", [{**s, "base_model": before.get(s["prompt"])}
                                                 for s in test.extra["samples"]])


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    write_json(run_dir / "metrics.json", metrics)


def mirror_to_mlflow(cfg: RunConfig, run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]],
                     console: Any) -> dict[str, Any]:
    """MLflow is a mirror of the folder: a tracking failure is reported, the finished run stays finished."""
    if not cfg.tracking.mlflow:
        return {}
    from tuneforge.registry.tracking import log_run

    try:
        return log_run(cfg, run_dir, metrics["test"], metrics["baselines"], history)
    except Exception as exc:  # the run itself is complete and recorded on disk
        console.print(f"[yellow]warning: MLflow logging failed ({exc}); the run folder is complete[/yellow]")
        return {"error": f"{type(exc).__name__}: {exc}"}
