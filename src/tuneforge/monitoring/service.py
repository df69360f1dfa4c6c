"""One monitoring check as the CLI (and a scheduler) runs it: verdict, report, optional Evidently and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.monitoring.monitor import MonitorSettings, RunView, monitor
from tuneforge.serving.request_log import log_path


def check(run_dir: Path, workspace: Path, settings: MonitorSettings, out_dir: Path, since_text: str = "", *,
          evidently: bool = False, export: Path | None = None, count: int = 100,
          view: RunView | None = None, names: list[str] | None = None) -> tuple[dict[str, Any], Path, RunView]:
    """Write verdict.json and report.html into `out_dir` (and the export, if asked); returns (verdict, report, the
    view to pass to the next check)."""
    from tuneforge.monitoring.report import write_report

    log_file = log_path(workspace)
    checked = monitor(run_dir, log_file, settings, since_text, view, names)
    verdict = checked.verdict
    if evidently:
        from tuneforge.monitoring.evidently_check import evidently_check

        out_dir.mkdir(parents=True, exist_ok=True)
        verdict["evidently"] = evidently_check(checked.view, checked.reference, checked.rows, out_dir)
    if export is not None:
        from tuneforge.monitoring.curate import pick, write_export

        emb = checked.view.embed([r.text for r in checked.rows])
        picked = pick(checked.rows, emb, checked.reference, count, settings.seed)
        write_export(picked, export, {"model": verdict["model"], "run": str(run_dir), "request_log": str(log_file),
                                      "period": [verdict["windows"][0]["start_iso"],
                                                 verdict["windows"][-1]["end_iso"]]})
    return verdict, write_report(verdict, out_dir), checked.view
