"""`tuneforge monitor` (drift, live quality, verdict, curation) and `tuneforge data merge-labels`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.errors import TuneforgeError

console = Console()


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TuneforgeError(f"--now {text!r} is neither a Unix time nor an ISO date",
                             fix="write e.g. --now 2026-03-01T00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _run_dir(model: str, workspace: Path) -> tuple[Path, list[str]]:
    """The run folder and the names requests for it used: a folder, a run name in the workspace, or a registered
    model name (its `champion` run; the server answers the registered name with it)."""
    path = Path(model)
    if (path / "config.yaml").is_file():
        return path, [path.name]
    if (workspace / model / "config.yaml").is_file() or not (workspace / "mlflow.db").is_file():
        return workspace / model, [model]
    from tuneforge.monitoring.retrain import resolve_deployed

    run_dir, _registered, _space = resolve_deployed(model, workspace)
    return run_dir, [model, run_dir.name]


def monitor(model: Annotated[str, typer.Argument(help="Served run: its name in the workspace, its folder, or a "
                                                     "registered model name (its champion run).")],
            since: Annotated[str, typer.Option(help="Period checked, ending now (s, m, h, d, w).")] = "7d",
            window: Annotated[str, typer.Option(help="Window length; each window is tested.")] = "1d",
            workspace: Annotated[Path, typer.Option(help="The folder `tuneforge serve` serves.")] = Path("runs"),
            out: Annotated[Path | None, typer.Option(help="Where report.html and verdict.json go (default "
                                                          "WORKSPACE/.tuneforge/monitor/MODEL).")] = None,
            now: Annotated[str | None, typer.Option(help="End of the period (ISO date or Unix time; default: "
                                                         "now). For replays and simulations.")] = None,
            alpha: Annotated[float, typer.Option(help="Family-wise error per window (Holm).")] = 0.01,
            persistence: Annotated[int, typer.Option(min=1, help="Consecutive drifted windows for an alarm.")] = 2,
            min_requests: Annotated[int, typer.Option(min=5, help="Inputs a window needs to be tested.")] = 20,
            evidently: Annotated[bool, typer.Option(help="Also write Evidently's drift report (extra "
                                                         "`monitor`).")] = False,
            export_for_labelling: Annotated[Path | None, typer.Option(
                help="Write the inputs most worth labelling (JSONL) from the period.")] = None,
            count: Annotated[int, typer.Option(min=1, help="Rows to export for labelling.")] = 100,
            watch: Annotated[bool, typer.Option(help="Re-check every --interval.")] = False,
            interval: Annotated[str, typer.Option(help="Time between checks with --watch.")] = "1h",
            checks: Annotated[int | None, typer.Option(min=1, help="Stop after this many checks.")] = None,
            webhook: Annotated[str | None, typer.Option(help="POST the verdict (JSON) here when it is not ok.")]
            = None,
            notify: Annotated[str, typer.Option(help="When to call the webhook: warn (warn or drift), drift, "
                                                     "always.")] = "warn") -> None:
    """Drift and live quality of a served run from the request log; exit 0 ok, 3 warn, 4 drift (2: bad input)."""
    from tuneforge.monitoring import service
    from tuneforge.monitoring.monitor import MonitorSettings
    from tuneforge.monitoring.watch import parse_duration
    from tuneforge.monitoring.watch import watch as watch_loop

    if notify not in ("warn", "drift", "always"):
        raise TuneforgeError(f"--notify {notify!r} is not known", fix="use --notify warn, drift or always")
    settings = MonitorSettings(since_s=parse_duration(since, "--since"), window_s=parse_duration(window, "--window"),
                               alpha=alpha, persistence=persistence, min_requests=min_requests, now=_when(now))
    run_dir, names = _run_dir(model, workspace)
    out_dir = out or workspace / ".tuneforge" / "monitor" / model.replace("/", "_")

    views: list = []  # the loaded run and its embeddings, kept between --watch checks

    def check() -> tuple[dict, str]:
        verdict, report, view = service.check(run_dir, workspace, settings, out_dir, since, evidently=evidently,
                                              export=export_for_labelling, count=count,
                                              view=views[0] if views else None, names=names)
        views[:] = [view]
        return verdict, str(report)

    if watch:
        verdict = watch_loop(check, parse_duration(interval, "--interval"), checks, webhook, notify, console.print)
    else:
        verdict, report = check()
        colour = {"ok": "green", "warn": "yellow", "drift": "red"}[verdict["status"]]
        console.print(f"[{colour}]{verdict['status']}[/{colour}] {verdict['model']}: "
                      f"{verdict['reasons'][0]}", highlight=False)
        console.print(f"report {report}, verdict {out_dir / 'verdict.json'}", highlight=False)
        if export_for_labelling:
            console.print(f"wrote rows to label to {export_for_labelling}", highlight=False)
    raise typer.Exit(verdict["exit_code"])


def merge_labels(labelled: Annotated[Path, typer.Argument(help="The labelled export (JSONL).")],
                 into: Annotated[Path, typer.Option("--into", help="The source dataset the run trained on.")],
                 out: Annotated[Path, typer.Option("--out", help="The new dataset version (JSONL).")],
                 text_column: Annotated[str, typer.Option(help="Text column of the source.")] = "text",
                 label_column: Annotated[str, typer.Option(help="Label column of the source.")] = "label",
                 allow_new_labels: Annotated[bool, typer.Option(help="Accept labels the source lacks.")] = False
                 ) -> None:
    """Merge labelled requests into the source dataset as a new fingerprinted version (with lineage)."""
    from tuneforge.monitoring.merge_labels import merge_labels as merge

    lineage = merge(labelled, into, out, text_col=text_column, label_col=label_column, allow_new=allow_new_labels)
    console.print(f"wrote {out} (version {lineage['version']}, {lineage['rows']} rows, "
                  f"{lineage['labelled']['added']} new; fingerprint {lineage['fingerprint'][:12]}); lineage in "
                  f"{out}.lineage.json", highlight=False)
