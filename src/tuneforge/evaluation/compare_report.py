"""The comparison's recommendation (derived from the numbers, never hand-written) and its report.md/report.html."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

ALPHA = 0.05
KIND_NAMES = {"baseline": "no training", "fine_tuned": "fine-tuned", "combined": "fine-tuned + retrieval"}


def _points(metric: str) -> bool:
    """Scores in [0, 1] are reported as percentage points; losses and rewards as raw differences."""
    return not metric.endswith(("loss", "reward", "perplexity"))


def fmt_gain(value: float, metric: str) -> str:
    return f"{100 * value:+.2f} pts" if _points(metric) else f"{value:+.4f}"


def fmt_delta(row: dict[str, Any], metric: str) -> str:
    if row.get("best_baseline"):
        return "best baseline"
    if "delta" not in row:
        return ""
    return f"{fmt_gain(row['delta'], metric)} (p={row['p_value']:.3g})"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "none"
    if value < 10:
        return f"{value:.1f} s"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt_bytes(value: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def recommend(rows: list[dict[str, Any]], metric: str, higher: bool, n_test: int) -> str:
    sign = 1.0 if higher else -1.0
    base = next((r for r in rows if r.get("best_baseline")), None)
    tuned = [r for r in rows if r["kind"] != "baseline"]
    if base is None:
        return "No baseline could be measured; nothing to compare against."
    if not tuned:
        return (f"No fine-tuned run was given. Best without training: {base['system']} ({metric} "
                f"{base[metric]:.4f}). Train a run with this config and compare again to see whether fine-tuning "
                f"pays for itself.")
    best = max(tuned, key=lambda r: sign * r[metric])
    m = len(tuned)  # the winner is picked among m fine-tuned rows: Bonferroni-adjust its p-value

    def adjusted(row: dict[str, Any]) -> float:
        return min(1.0, row.get("p_value", 1.0) * m)

    if best["kind"] == "combined" and best.get("p_vs_run", 0.0) >= ALPHA:
        plain = next((r for r in tuned if r["key"] == best["key"].replace("run+rag:", "run:", 1)), None)
        # Retrieval adds nothing significant: recommend the simpler plain run, if it wins on its own too.
        if plain is not None and sign * (plain[metric] - base[metric]) > 0 and adjusted(plain) < ALPHA:
            best = plain
    gain = sign * (best[metric] - base[metric])
    p = adjusted(best)
    note = f", Bonferroni-adjusted for {m} fine-tuned rows" if m > 1 else ""
    shown = f"{metric} {best[metric]:.4f} vs {base[metric]:.4f}, {fmt_gain(best[metric] - base[metric], metric)}, " \
            f"p = {p:.3g}{note}"
    cost = (f"It costs {fmt_seconds(best['train_seconds'])} of training once and {best['latency_p50_ms']:.1f} ms "
            f"per example (p50) against {base['latency_p50_ms']:.1f} ms for the baseline.")
    if gain > 0 and p < ALPHA:
        extra = ""
        if best["kind"] == "combined":
            extra = (f" Retrieval on top of the fine-tuned model changes {metric} by "
                     f"{fmt_gain(best['delta_vs_run'], metric)} (p = {best['p_vs_run']:.3g}).")
        elif any(r["kind"] == "combined" for r in tuned):
            extra = " Adding retrieval to the fine-tuned model gives no significant further gain."
        return f"Fine-tune: {best['system']} beats the best baseline, {base['system']} ({shown}).{extra} {cost}"
    if gain > 0:
        return (f"Too close to call: {best['system']} leads {base['system']} ({shown}), but on {n_test} test "
                f"examples that difference is within noise. Prefer {base['system']}, which needs no training, "
                f"or measure on a larger test set before paying for fine-tuning.")
    if p < ALPHA:
        return (f"Do not fine-tune (yet): {base['system']} beats every fine-tuned row, the best of them "
                f"significantly ({shown}). Try a longer schedule or another method before spending more compute.")
    return (f"Too close to call, and fine-tuning does not lead: the best fine-tuned run is not significantly "
            f"different from {base['system']} ({shown}), which needs no training; keep it, or measure on a larger "
            f"test set.")


def write_comparison_report(out: Path, cfg: Any, result: Any, higher: bool) -> Path:
    from tuneforge.evaluation.html import write_html_report
    from tuneforge.evaluation.plots import comparison_png, cost_scatter_png
    from tuneforge.registry.files import write_text

    metric, rows = result.metric, result.rows
    conf = int(100 * cfg.compare.confidence)
    plots = [comparison_png(rows, metric, out / "comparison.png", conf),
             cost_scatter_png(rows, metric, out / "score_vs_latency.png")]
    extra_col = "accuracy" if "accuracy" in rows[0] else None
    secondary = list(rows[0].get("secondary", {}))  # e.g. recall@k and kNN accuracy of embedding rows
    lines = [f"# Comparison: {cfg.name}", "",
             f"Task **{cfg.task.name}**, base model `{cfg.model.path}`, {result.extra['test_examples']} test "
             f"examples (the split every fine-tuned run below was tested on).", "",
             "## Recommendation", "", f"> {html.escape(result.recommendation, quote=False)}", "",
             "## Results", "",
             f"| system | kind | {metric} [{conf}% CI] |" + (f" {extra_col} |" if extra_col else "")
             + " vs best baseline (paired test) | training | latency p50 / p95 | peak memory | trainable params "
               "| artefact |" + "".join(f" {n} [{conf}% CI] |" for n in secondary),
             "|---|---|---:|" + ("---:|" if extra_col else "") + "---:|---:|---:|---:|---:|---:|"
             + "---:|" * len(secondary)]
    for r in rows:
        system = html.escape(r["system"] + (f" ({r['note']})" if r.get("note") else ""), quote=False)
        cells = [system.replace("|", "\\|"), KIND_NAMES.get(r["kind"], r["kind"]),
                 f"{r[metric]:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"]
        if extra_col:
            cells.append(f"{r[extra_col]:.4f}")
        cells += [fmt_delta(r, metric), fmt_seconds(r["train_seconds"]),
                  f"{r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f} ms", f"{r['peak_memory_mb']:.0f} MB",
                  f"{r['trainable_params']:,}", fmt_bytes(r["artifact_bytes"])]
        cells += [f"{v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
                  for v in (r["secondary"][n] for n in secondary)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"- CI: percentile bootstrap over test examples ({cfg.compare.bootstrap_samples} resamples).",
              f"- Paired test: two-sided approximate randomisation ({cfg.compare.permutations} permutations) "
              "against the best baseline on the same examples; p < 0.05 is called significant.",
              "- Training: the run's recorded training time; for retrieval and the probe, embedding the training "
              "set (+ fitting). Latency: one example at a time on this machine. Peak memory: CUDA allocator peak, "
              "or the process's peak resident memory on CPU (everything that must be resident to serve).",
              "", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    samples = result.extra.get("samples")
    if samples:
        lines += ["", "## Where the best fine-tuned run and the best baseline disagree (test)", "",
                  "| input | reference | best baseline | fine-tuned |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(html.escape(str(c), quote=False).replace("|", "\\|")[:160] for c in s) + " |"
                  for s in samples]
    md = write_text(out / "report.md", "\n".join(lines) + "\n")
    write_html_report(md)
    return md
