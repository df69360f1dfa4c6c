"""`tuneforge runs`: list, show and compare finished runs from their folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import RunError

app = typer.Typer(help="Read recorded runs back.", no_args_is_help=True)
console = Console()


def _summary(path: Path) -> dict:
    cfg_text = (path / "config.yaml").read_text() if (path / "config.yaml").is_file() else ""
    import yaml

    try:
        cfg = yaml.safe_load(cfg_text) or {}
    except yaml.YAMLError:
        cfg = {}  # a damaged config still lists the run, with unknown task/method
    metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
    status = json.loads((path / "run.json").read_text()).get("status") if (path / "run.json").is_file() else "?"
    task = cfg.get("task", {})
    method = cfg.get("method", {})
    return {"run": path.name, "path": str(path), "status": status,
            "task": task.get("name") if isinstance(task, dict) else task,
            "method": method.get("name") if isinstance(method, dict) else method,
            "primary": metrics.get("primary_metric"), "test": metrics.get("test", {}),
            "train": metrics.get("train", {})}


@app.command("list")
def list_runs(root: Annotated[Path, typer.Option("--dir", help="Workspace (output_dir).")] = Path("runs")) -> None:
    """List run folders under a workspace."""
    if not root.is_dir():
        raise RunError(f"no workspace at {root}", fix="pass --dir with the config's output_dir")
    table = Table(show_header=True)
    for col in ("run", "status", "task", "method", "test metric", "train s"):
        table.add_column(col)
    for path in sorted(p for p in root.iterdir() if (p / "config.yaml").is_file()):
        s = _summary(path)
        score = s["test"].get(s["primary"]) if s["primary"] else None
        table.add_row(s["run"], str(s["status"]), str(s["task"]), str(s["method"]),
                      f"{s['primary']}={score:.4f}" if score is not None else "-",
                      str(s["train"].get("train_seconds", "-")))
    console.print(table)


@app.command()
def show(run: Path) -> None:
    """Show one run: config, test metrics, baselines."""
    from tuneforge.api import load_run

    loaded = load_run(run)
    console.print(f"[bold]{run}[/bold]  task={loaded.config.task.name} method={loaded.config.method.name}")
    console.print_json(json.dumps({k: loaded.metrics[k] for k in ("test", "baselines", "train")}))


@app.command()
def compare(runs: list[Path]) -> None:
    """Compare finished runs side by side on their test metrics."""
    summaries = []
    for run in runs:
        if not (run / "metrics.json").is_file():
            raise RunError(f"{run} is not a finished run (no metrics.json)", fix="see `tuneforge runs list`")
        summaries.append(_summary(run))
    keys = sorted({k for s in summaries for k in s["test"]})
    table = Table(show_header=True)
    table.add_column("run")
    table.add_column("method")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("trainable", justify="right")
    table.add_column("train s", justify="right")
    for s in summaries:
        table.add_row(s["run"], str(s["method"]), *[f"{s['test'].get(k, float('nan')):.4f}" for k in keys],
                      f"{s['train'].get('trainable_params', 0):,}", str(s["train"].get("train_seconds", "-")))
    console.print(table)
