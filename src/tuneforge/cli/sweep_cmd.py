"""`tuneforge sweep CONFIG`: hyperparameter search over the config's `sweep.params` (a thin shell over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sweep(config: Annotated[Path, typer.Argument(help="Run config (YAML) with a `sweep:` block.")],
          trials: Annotated[int | None, typer.Option("--trials", min=1,
                                                     help="Trials in the study (default: sweep.trials).")] = None,
          workers: Annotated[int | None, typer.Option("--workers", min=1,
                                                      help="Parallel worker processes (default: sweep.workers).")]
          = None,
          storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL, e.g. "
                                                      "postgresql://user:pass@host/db (default: SQLite in the "
                                                      "sweep folder).")] = None,
          overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: "
                                                              "--set training.epochs=1")] = None) -> None:
    """Search hyperparameters with Optuna (TPE, median pruning); every trial is a normal recorded run.

    Writes <output_dir>/<name>-sweep/: a run folder per trial, best.yaml, a reference run, report.md/.html.
    """
    from rich.console import Console

    from tuneforge.hpo.sweep import sweep as run_sweep

    console = Console()
    result = run_sweep(config, trials=trials, workers=workers, storage=storage, overrides=list(overrides or []),
                       console=console)
    console.print(f"[green]done[/green]: sweep folder {result.sweep_dir}")
