"""`tuneforge retrain`, `tuneforge promote`, `tuneforge rollback`: retraining with replay behind an evaluation gate,
and the MLflow `champion` / `challenger` aliases the server follows (monitoring/retrain.py, gate.py,
registry_aliases.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import TuneforgeError

console = Console()
Workspace = Annotated[Path | None, typer.Option("--workspace", help="Workspace of the runs and their mlflow.db "
                                                                    "(default: runs, or the run folder's parent).")]


def retrain(model: Annotated[str, typer.Argument(help="Registered model name (its champion, else latest "
                                                      "version) or a run folder.")],
            data: Annotated[Path, typer.Option("--data", help="New labelled data (the deployed run's columns).")],
            replay: Annotated[float, typer.Option("--replay", help="Share of the training examples replayed from "
                                                                   "the original training split, in [0, 1).")] = 0.3,
            workspace: Workspace = None,
            from_base: Annotated[bool, typer.Option("--from-base", help="Train from the original base model (a new "
                                                                        "head; allows new labels).")] = False,
            name: Annotated[str | None, typer.Option("--name", help="Run folder name (default: RUN-retrainN).")] = None,
            overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key of the "
                                                                             "retrain run.")] = None,
            metric: Annotated[str, typer.Option(help="Gate metric: accuracy, macro_f1, weighted_f1.")] = "accuracy",
            max_regression: Annotated[float, typer.Option(help="Largest drop on the old test set tolerated.")] = 0.01,
            min_gain: Annotated[float, typer.Option(help="Gain on the new test split to exceed.")] = 0.0,
            alpha: Annotated[float, typer.Option(help="Significance level of the paired tests.")] = 0.05,
            require_gain: Annotated[bool, typer.Option(help="Fail without a significant gain on the new "
                                                            "data.")] = True,
            regression_test: Annotated[str, typer.Option(help="significance (a drop must be significant to fail) "
                                                              "or non_inferiority (the CI must rule the drop "
                                                              "out).")] = "significance",
            quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or data tables.")] = False) -> None:
    """Retrain the deployed model on new data plus replay; gate it (exit 0 passed, 1 refused, 2 bad input)."""
    from tuneforge.monitoring.gate import GateThresholds
    from tuneforge.monitoring.retrain import retrain as run_retrain

    thresholds = GateThresholds(metric=metric, max_regression=max_regression, min_gain=min_gain, alpha=alpha,
                                require_gain=require_gain, regression_test=regression_test)
    result = run_retrain(model, data, replay=replay, workspace=workspace, from_base=from_base, name=name,
                         overrides=list(overrides or []), thresholds=thresholds, quiet=quiet, console=console)
    table = Table(title=f"gate: {result.run_dir.name} vs {result.parent.name}")
    for column in ("set", "examples", "champion", "candidate", "difference", "p"):
        table.add_column(column)
    for row in result.decision.table:
        table.add_row(row["set"], str(row["examples"]), f"{row['champion']:.4f}", f"{row['candidate']:.4f}",
                      f"{row['difference']:+.4f}", f"{row['p_value']:.4f}")
    console.print(table)
    for reason in result.decision.reasons:
        console.print(f"  {reason}")
    where = f" ({result.registered[0]} version {result.registered[1]}, now the challenger)" if result.registered else ""
    console.print(f"[{'green' if result.decision.passed else 'red'}]gate "
                  f"{'passed' if result.decision.passed else 'refused'}[/]: {result.run_dir}{where}")
    raise typer.Exit(0 if result.decision.passed else 1)


def promote(model: Annotated[str, typer.Argument(help="Registered model name.")],
            version: Annotated[int | None, typer.Option("--version", help="Version to make the champion.")] = None,
            run: Annotated[Path | None, typer.Option("--run", help="...or the run folder registered as it.")] = None,
            force: Annotated[bool, typer.Option("--force", help="Promote a version that failed its gate.")] = False,
            history: Annotated[bool, typer.Option("--history", help="Print the alias history and stop.")] = False,
            reason: Annotated[str, typer.Option("--reason", help="Recorded with the move.")] = "",
            workspace: Workspace = None) -> None:
    """Point the `champion` alias at a version (the server answers with it from its next check on)."""
    from tuneforge.monitoring import registry_aliases as ra

    space = workspace or Path("runs")
    if history:
        print_history(model, space)
        return
    if (version is None) == (run is None):
        raise TuneforgeError("give either --version N or --run RUN_DIR", fix=f"tuneforge promote {model} --version 2")
    events = ra.promote(model, version, run=run, workspace=space, force=force, reason=reason)
    for e in events:
        console.print(f"{model}: {e.alias} {e.from_version or '-'} -> {e.to_version or '-'}"
                      f"{' (forced past a failed gate)' if e.forced else ''}")


def rollback(model: Annotated[str, typer.Argument(help="Registered model name.")],
             reason: Annotated[str, typer.Option("--reason", help="Recorded with the move.")] = "",
             workspace: Workspace = None) -> None:
    """Move `champion` back to the previous champion; the demoted version becomes the `challenger`."""
    from tuneforge.monitoring import registry_aliases as ra

    for e in ra.rollback(model, workspace=workspace or Path("runs"), reason=reason):
        console.print(f"{model}: {e.alias} {e.from_version or '-'} -> {e.to_version or '-'}")


def print_history(model: str, workspace: Path) -> None:
    from tuneforge.monitoring import registry_aliases as ra

    table = Table(title=f"{model}: alias history")
    for column in ("at (UTC)", "alias", "from", "to", "action", "by", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column == "at (UTC)")  # wrapped, never cut short
    for e in ra.history(model, workspace=workspace):
        table.add_row(e.at, e.alias, str(e.from_version or "-"), str(e.to_version or "-"),
                      e.action + (" (forced)" if e.forced else ""), e.by, e.reason)
    console.print(table)
