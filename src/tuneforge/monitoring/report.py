"""report.html (plots over time inlined as data URIs: no network, no scripts) and verdict.json in one folder."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.monitoring.drift import wilson_ci
from tuneforge.registry.files import write_json, write_text


def _tested(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in verdict["windows"] if w["status"] != "insufficient"]


def _pvalue_plot(verdict: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = _tested(verdict)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    names = sorted({t["name"] for w in windows for t in w["tests"]})
    for name in names:
        xs = [i for i, w in enumerate(windows) if any(t["name"] == name for t in w["tests"])]
        ys = [-np.log10(max(1e-12, next(t["p_adjusted"] for t in windows[i]["tests"] if t["name"] == name)))
              for i in xs]
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.axhline(-np.log10(verdict["settings"]["alpha"]), color="red", ls="--", lw=1, label="alpha")
    for i, w in enumerate(windows):
        if w["end_iso"] in verdict["alarms"]:
            ax.axvline(i, color="red", alpha=0.3, lw=6)
    ax.set_xticks(range(len(windows)), [w["start_iso"][:10] for w in windows], rotation=60, fontsize=7)
    ax.set_ylabel("-log10 p (Holm)")
    ax.set_title("Drift tests per window (red bands: alarms)")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _quality_plot(verdict: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = _tested(verdict)
    series = [(i, w) for i, w in enumerate(windows) if "mean_confidence" in w or "live_accuracy" in w]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.2))
    conf = [(i, w["mean_confidence"]) for i, w in series if "mean_confidence" in w]
    if conf:
        ax.plot(*zip(*conf, strict=True), marker="o", ms=3, label="mean confidence")
    acc = [(i, w["live_accuracy"]) for i, w in series if "live_accuracy" in w]
    if acc:
        xs = [i for i, _ in acc]
        rates = [a["correct"] / a["labelled"] for _, a in acc]
        cis = [wilson_ci(a["correct"], a["labelled"]) for _, a in acc]
        ax.errorbar(xs, rates, yerr=[[r - lo for r, (lo, _) in zip(rates, cis, strict=True)],
                                     [hi - r for r, (_, hi) in zip(rates, cis, strict=True)]],
                    marker="s", ms=3, capsize=2, label="live accuracy (95% Wilson CI)")
    ref = next((w.get("reference_accuracy") for _, w in series if w.get("reference_accuracy") is not None), None)
    if ref is not None:
        ax.axhline(ref, color="grey", ls=":", label="held-out accuracy")
    ax.set_xticks(range(len(windows)), [w["start_iso"][:10] for w in windows], rotation=60, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("Confidence and live accuracy per window")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(verdict: dict[str, Any]) -> str:
    names = sorted({t["name"] for w in verdict["windows"] for t in w["tests"]})
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for w in verdict["windows"]:
        cells = {t["name"]: t for t in w["tests"]}
        tds = "".join(f"<td title=\"{html.escape(cells[n]['detail'])}\">{cells[n]['p_adjusted']:.2g}</td>"
                      if n in cells else "<td></td>" for n in names)
        rows.append(f"<tr><td>{w['start_iso']}</td><td>{w['requests']}</td><td>{w['status']}</td>{tds}</tr>")
    return (f"<table><tr><th>window start</th><th>inputs</th><th>status</th>{head}</tr>{''.join(rows)}</table>"
            "<p>Cells: Holm-adjusted p-values (hover for the statistic).</p>")


def write_report(verdict: dict[str, Any], out_dir: Path) -> Path:
    """verdict.json and report.html (self-contained) in `out_dir`; returns the report's path."""
    from tuneforge.evaluation.html import markdown_to_html

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "verdict.json", verdict)
    plots = [p for p in (_pvalue_plot(verdict, out_dir / "drift_tests.png"),
                         _quality_plot(verdict, out_dir / "quality.png")) if p is not None]
    reasons = "\n".join(f"- {html.escape(r)}" for r in verdict["reasons"])
    images = "\n\n".join(f"![{p.stem}]({p.name})" for p in plots)
    md = (f"# Monitoring {html.escape(verdict['model'])}: {verdict['status'].upper()}\n\n{reasons}\n\n"
          f"Request log: `{html.escape(verdict['request_log'])}`; reference: "
          f"{verdict['reference']['rows']} held-out rows.\n\n{images}\n\n## Windows\n\n{_table(verdict)}\n\n"
          f"## Settings\n\n```\n{json.dumps(verdict['settings'], indent=1)}\n```\n")
    extra = verdict.get("evidently")
    if extra:
        md += f"\n## Evidently (cross-check)\n\n```\n{json.dumps(extra, indent=1)[:4000]}\n```\n"
    return write_text(out_dir / "report.html", markdown_to_html(md, out_dir, title=f"monitor {verdict['model']}"))
