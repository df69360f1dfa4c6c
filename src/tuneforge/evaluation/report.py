"""The comparison table (fine-tuned vs base-model baselines) and the run's report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.tasks.base import EvalResult

BASELINE_NAMES = {"linear_probe": "base model + linear probe (frozen features)",
                  "zero_shot": "base model zero-shot (similarity to label names)",
                  "base_model": "base model (before fine-tuning)",
                  "teacher": "teacher (distillation ceiling, not a baseline)"}


def comparison_rows(method: str, tuned: EvalResult, baselines: dict[str, EvalResult], primary: str,
                    secondary: str, ceilings: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows for the table: every baseline, then the fine-tuned model with its gain over the best baseline.
    Ceiling rows (a distillation teacher) are shown but are not baselines to beat."""
    rows = [{"model": BASELINE_NAMES.get(name, name), "key": name, "score": r.metrics.get(primary, float("nan")),
             secondary: r.metrics.get(secondary, float("nan"))} for name, r in baselines.items()]
    sign = -1.0 if primary.endswith("loss") else 1.0  # a loss improves downwards
    rivals = [r for r in rows if r["key"] not in ceilings]
    best = max(rivals, key=lambda r: sign * r["score"]) if rivals else None
    row: dict[str, Any] = {"model": f"fine-tuned ({method})", "key": "fine_tuned", "score": tuned.metrics[primary],
                           secondary: tuned.metrics.get(secondary, float("nan"))}
    if best is not None:
        gain = sign * (tuned.metrics[primary] - best["score"])
        row["delta_points"] = round(100 * gain, 2)
        row["delta_relative_pct"] = round(100 * gain / best["score"], 1) if best["score"] else None
        row["delta"] = f"{100 * gain:+.2f} pts ({row['delta_relative_pct']:+.1f}%)" if best["score"] else ""
    return [*rows, row]


def print_comparison(rows: list[dict[str, Any]], primary: str, secondary: str, console: Any) -> None:
    from rich.table import Table

    table = Table(title="Test set: fine-tuned vs base model", show_header=True)
    table.add_column("model")
    table.add_column(primary, justify="right")
    table.add_column(secondary, justify="right")
    table.add_column("vs best baseline", justify="right")
    for r in rows:
        table.add_row(r["model"], f"{r['score']:.4f}", f"{r.get(secondary, float('nan')):.4f}", r.get("delta", ""))
    console.print(table)


def _cell(text: str, limit: int = 160) -> str:
    """One table cell: one line, pipes escaped, HTML escaped (report.html must not run text from the data)."""
    import html

    text = html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _refit_lines(refit: dict[str, Any] | None) -> list[str]:
    """training.refit: the tested model is not the best checkpoint but a second run; say so next to it."""
    if not refit:
        return []
    return ["", f"Refit (`training.refit`): retrained from the starting weights on train + validation "
                f"({refit['examples']:,} examples) for the chosen {refit['steps']} steps in {refit['seconds']:.0f} s; "
                f"the test rows below are that model's."]


def write_report(path: Path, cfg: Any, rows: list[dict[str, Any]], primary: str, secondary: str,
                 test: EvalResult, baselines: dict[str, EvalResult], train_info: dict[str, Any],
                 data_report: dict[str, Any], plots: list[Path]) -> Path:
    from tuneforge.registry.files import write_text

    lines = [f"# Run report: {cfg.name}", "",
             f"Task **{cfg.task.name}**, method **{cfg.method.name}**, base model `{cfg.model.path}`.",
             f"Trained {train_info['trainable_params']:,} of {train_info['total_params']:,} parameters "
             f"({100 * train_info['trainable_params'] / train_info['total_params']:.2f}%) for "
             f"{train_info['steps']} steps in {train_info['train_seconds']:.0f} s; best checkpoint at step "
             f"{train_info.get('best_step')} (validation {train_info.get('metric', primary)} "
             f"{_fmt(train_info.get('best_metric'))}).", *_refit_lines(train_info.get("refit")), "",
             "## Test set", "", f"| model | {primary} | {secondary} | vs best baseline |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['score']:.4f} | {r.get(secondary, float('nan')):.4f} | {r.get('delta', '')} |"
              for r in rows]
    lines += ["", "All rows are measured in this run on the same test split.", ""]
    if train_info.get("overfitting"):
        lines += ["## Warnings", ""]
        lines += [f"- Overfitting at step {e['step']}: validation loss {e['eval_loss'][0]:.4f} -> "
                  f"{e['eval_loss'][-1]:.4f} while training loss fell" for e in train_info["overfitting"]]
        lines.append("")
    forgetting = train_info.get("forgetting")
    if forgetting and forgetting.get("change") is not None:
        lines += ["## Forgetting", "", f"Language-model loss on the reference set ({train_info.get('reference_texts')} "
                  f"texts, {train_info.get('reference_source')}): {forgetting['reference_loss_before']:.4f} before, "
                  f"{forgetting['reference_loss_after']:.4f} after ({forgetting['change']:+.4f}). "
                  + _mitigations(cfg, train_info), ""]
    if test.per_class:
        lines += ["## Per class (test)", "", "| class | precision | recall | F1 | support |",
                  "|---|---:|---:|---:|---:|"]
        for name, m in sorted(test.per_class.items(), key=lambda kv: kv[1]["f1"]):
            lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    examples = test.extra.get("examples", [])
    if examples:
        lines += ["", "## Sample predictions (test: mistakes first)", "", "| text | true label | predicted |",
                  "|---|---|---|"]
        for e in examples:
            shown = _cell(e["predicted"]) if e["predicted"] == e["reference"] else f"**{_cell(e['predicted'])}**"
            lines.append(f"| {_cell(e['text'])} | {_cell(e['reference'])} | {shown} |")
    samples = test.extra.get("samples", [])
    if samples:
        lines += _sample_table(samples, baselines)
    rows_count = data_report["rows"]
    lines += ["", "## Data", "", f"train {rows_count['train']} / validation {rows_count['validation']} / "
              f"test {rows_count['test']} after cleaning; imbalance ratio {data_report.get('imbalance_ratio')}; "
              f"leakage {data_report.get('leakage')}. Full report: `data/report.json`.", "", "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in plots]
    return write_text(path, "\n".join(lines) + "\n")


def _mitigations(cfg: Any, train_info: dict[str, Any]) -> str:
    """The forgetting mitigations a run used, in words."""
    f = getattr(cfg.task, "forgetting", None)
    used = []
    if train_info.get("replay_examples"):
        used.append(f"replay of {train_info['replay_examples']} examples drawn from {train_info['replay_texts']} "
                    "reference texts kept apart from the measured ones")
    if f is not None and f.kl_to_base > 0:
        used.append(f"KL-to-base penalty (weight {f.kl_to_base})")
    if f is not None and f.backbone_lr_scale < 1:
        used.append(f"backbone learning rate x{f.backbone_lr_scale}")
    return f"Mitigations: {'; '.join(used)}." if used else "No mitigation was enabled."


def _sample_table(samples: list[dict[str, Any]], baselines: dict[str, Any]) -> list[str]:
    """Base vs fine-tuned replies to the same test prompts, with the reference answer or the reward when known."""
    base = baselines.get("base_model") or next(iter(baselines.values()), None)
    before = {s["prompt"]: s for s in (base.extra.get("samples", []) if base is not None else [])}
    scored = "reward" in samples[0]
    header = "| prompt | base model | reward | fine-tuned | reward |" if scored else \
        "| prompt | reference | base model | fine-tuned |"
    lines = ["## Sample generations (test)", "", header, "|---" * header.count(" | ") + "|---|"]
    for sample in samples[:10]:
        base = before.get(sample["prompt"], {})
        if scored:
            cells = [sample["prompt"], base.get("generated", ""), f"{base.get('reward', float('nan')):.3f}",
                     sample["generated"], f"{sample['reward']:.3f}"]
        else:
            cells = [sample["prompt"], sample.get("reference", ""), base.get("generated", ""), sample["generated"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines
