"""What the dashboard reads from run folders: one summary per run, a run's curves (live while it trains), its details.

Read-only and tolerant: a run folder being written (no metrics.json yet, a half-written last line in
logs/metrics.jsonl) or damaged (bad YAML) still lists, with what can be read. Nothing here loads a model.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneforge.registry.files import read_json
from tuneforge.serving.dashboard.sessions import PageError
from tuneforge.training.callbacks import LIVE_METRICS

FINISHED = ("finished", "failed", "interrupted")
# Logged numbers that are bookkeeping, not curves
_NOT_CURVES = ("runtime", "per_second", "total_flos", "train_loss", "epoch", "step", "time")
PLOT_SUFFIXES = (".png", ".svg")
# A job's servable checkpoints (serving/job_checkpoints.py) are run folders too; its job page lists them, the runs
# list does not (three per job would bury the runs)
CHECKPOINT_FOLDER = re.compile(r"\.ckpt-\d+$")


@dataclass
class RunSummary:
    name: str
    status: str
    task: str
    method: str
    base_model: str
    metric: str | None
    score: float | None
    time: float
    steps: int | None
    train_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.time)) if self.time else "-"


def _read(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _config(run_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _name_of(section: Any) -> str:
    return str(section.get("name", "?")) if isinstance(section, dict) else str(section or "?")


def summarise(run_dir: Path) -> RunSummary:
    cfg, metrics, status = _config(run_dir), _read(run_dir / "metrics.json"), _read(run_dir / "run.json")
    primary = metrics.get("primary_metric")
    score = (metrics.get("test") or {}).get(primary) if primary else None
    train = metrics.get("train") or {}
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    stamp = status.get("time") or (run_dir / "config.yaml").stat().st_mtime
    return RunSummary(run_dir.name, str(status.get("status") or ("finished" if metrics else "?")),
                      _name_of(cfg.get("task")), _name_of(cfg.get("method")), str(model.get("path", "?")),
                      primary, float(score) if isinstance(score, int | float) else None, float(stamp),
                      train.get("steps"), train.get("train_seconds"))


def list_runs(workspace: Path, query: str = "") -> list[RunSummary]:
    """Every run folder (one holding config.yaml) directly under the workspace, newest first; `query` keeps those
    whose name, status, task or method contain it (case-insensitive)."""
    if not workspace.is_dir():
        return []
    runs = [summarise(p) for p in workspace.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()
            and not CHECKPOINT_FOLDER.search(p.name)]
    words = query.lower().split()
    if words:
        runs = [r for r in runs if all(any(w in f.lower() for f in (r.name, r.status, r.task, r.method))
                                       for w in words)]
    return sorted(runs, key=lambda r: -r.time)


def run_folder(workspace: Path, name: str) -> Path:
    """The folder of run `name`: a direct child of the workspace, never a path out of it."""
    path = workspace / name
    if ("/" in name or "\\" in name or name.startswith(".") or not name
            or path.resolve().parent != workspace.resolve() or not (path / "config.yaml").is_file()):
        raise PageError(404, f"there is no run called {name!r} in this workspace")
    return path


def _history_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The logged steps: history.json once finished; while training, logs/metrics.jsonl as it is written; for runs
    from before that file existed, the newest checkpoint's trainer_state.json."""
    history = _read(run_dir / "history.json")
    if isinstance(history, list) and history:
        return history
    live = run_dir / LIVE_METRICS
    if live.is_file():
        rows = []
        for line in live.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line being written right now
                continue
        return rows
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"),
                         key=lambda p: int(p.name.rpartition("-")[2]) if p.name.rpartition("-")[2].isdigit() else -1)
    for ckpt in reversed(checkpoints):
        state = _read(ckpt / "trainer_state.json")
        if state.get("log_history"):
            return list(state["log_history"])
    return []


def curves(run_dir: Path) -> dict[str, Any]:
    """{"status", "primary", "series": {name: [[step, value], ...]}} with one value per step (a resumed run logs
    the steps after its checkpoint again: the last one counts)."""
    series: dict[str, dict[int, float]] = {}
    for row in _history_rows(run_dir):
        step = row.get("step")
        if not isinstance(step, int | float):
            continue
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and not key.endswith(_NOT_CURVES) \
                    and key not in _NOT_CURVES:
                series.setdefault(key, {})[int(step)] = float(value)
    metrics, status = _read(run_dir / "metrics.json"), _read(run_dir / "run.json")
    primary = metrics.get("primary_metric") or (_config(run_dir).get("evaluation") or {}).get("metric")
    return {"run": run_dir.name, "status": status.get("status") or ("finished" if metrics else "?"),
            "primary": primary, "points": sum(len(v) for k, v in series.items() if k in ("loss", "eval_loss")),
            "series": {k: [[s, x] for s, x in sorted(v.items())] for k, v in sorted(series.items())}}


def details(run_dir: Path) -> dict[str, Any]:
    """Everything the run page shows besides the curves."""
    metrics = _read(run_dir / "metrics.json")
    samples: list[dict[str, Any]] = []
    if (run_dir / "samples.jsonl").is_file():
        for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()[:20]:
            try:
                samples.append(json.loads(line))
            except ValueError:
                continue
    plots = sorted(p.name for p in (run_dir / "plots").glob("*") if p.suffix in PLOT_SUFFIXES) \
        if (run_dir / "plots").is_dir() else []
    return {"summary": summarise(run_dir), "status": _read(run_dir / "run.json"),
            "test": metrics.get("test") or {}, "comparison": metrics.get("comparison") or [],
            "per_class": metrics.get("per_class") or {}, "train": metrics.get("train") or {},
            "plots": plots, "samples": samples, "report": (run_dir / "report.html").is_file(),
            "config": (run_dir / "config.yaml").read_text(encoding="utf-8", errors="replace")}


def plot_file(run_dir: Path, filename: str) -> Path:
    """One of the run's own plots, by file name only."""
    path = run_dir / "plots" / filename
    if "/" in filename or "\\" in filename or filename.startswith(".") or path.suffix not in PLOT_SUFFIXES \
            or not path.is_file():
        raise PageError(404, f"run {run_dir.name} has no plot {filename!r}")
    return path
