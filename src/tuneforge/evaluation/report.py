"""The comparison table (fine-tuned vs base-model baselines) and the run's report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.evaluation.stats import METRIC_FNS, bootstrap_ci, higher_is_better, metric_fn, paired_permutation_test
from tuneforge.tasks.base import EvalResult

BASELINE_NAMES = {"linear_probe": "base model + linear probe (frozen features)",
                  "zero_shot": "base model zero-shot (similarity to label names)",
                  "base_model": "base model (before fine-tuning)",
                  "teacher": "teacher (distillation ceiling, not a baseline)"}


PROPORTION_SUFFIXES = ("accuracy", "f1", "precision", "recall", "exact_match", "rouge_l")


def is_proportion(metric: str) -> bool:
    """Metrics in [0, 1], whose differences read best as percentage points; all others keep their own units."""
    return metric.endswith(PROPORTION_SUFFIXES)


def format_gain(metric: str, gain: float) -> str:
    return f"{100 * gain:+.2f} pts" if is_proportion(metric) else f"{gain:+.4f}"


def _paired_arrays(result: EvalResult) -> tuple[np.ndarray, np.ndarray] | None:
    """(references, predictions) when the result kept one output per test example: class ids, or per-query scores
    (retrieval) against example ids (multi-label vectors and tag sequences are not resampled here)."""
    if not result.predictions or len(result.predictions) != len(result.references):
        return None
    try:
        refs, preds = np.asarray(result.references), np.asarray(result.predictions)
    except ValueError:  # ragged
        return None
    ok = refs.ndim == preds.ndim == 1 and np.issubdtype(refs.dtype, np.integer) and np.issubdtype(preds.dtype,
                                                                                                     np.number)
    return (refs, preds) if ok else None


def comparison_rows(method: str, tuned: EvalResult, baselines: dict[str, EvalResult], primary: str,
                    secondary: str, ceilings: tuple[str, ...] = (), *, seed: int = 0, samples: int = 1000,
                    permutations: int = 2000) -> list[dict[str, Any]]:
    """Rows for the table: every baseline, then the fine-tuned model with its gain over the best baseline.
    `gain` is the improvement in the metric's own units (positive = better, whichever way the metric points).
    Where the rows kept their per-example outputs, each gets a 95% bootstrap CI and the fine-tuned row a paired
    permutation test against the best baseline. Ceiling rows (a distillation teacher) are not baselines to beat."""
    sign = 1.0 if higher_is_better(primary) else -1.0
    fn = metric_fn(primary) if primary in METRIC_FNS else None
    results = {**baselines, "fine_tuned": tuned}
    rows = [{"model": BASELINE_NAMES.get(name, name), "key": name, "score": r.metrics.get(primary, float("nan")),
             secondary: r.metrics.get(secondary, float("nan"))} for name, r in baselines.items()]
    row: dict[str, Any] = {"model": f"fine-tuned ({method})", "key": "fine_tuned", "score": tuned.metrics[primary],
                           secondary: tuned.metrics.get(secondary, float("nan"))}
    rows.append(row)
    arrays = {key: _paired_arrays(r) for key, r in results.items()} if fn else {}
    for r in rows:
        if arrays.get(r["key"]) is not None:
            ci = bootstrap_ci(*arrays[r["key"]], fn, samples, 0.95, seed)
            r.update(ci_low=ci.low, ci_high=ci.high)
    rivals = [r for r in rows[:-1] if r["key"] not in ceilings]
    best = max(rivals, key=lambda r: sign * r["score"]) if rivals else None
    if best is None:
        return rows
    gain = sign * (row["score"] - best["score"])
    row.update(gain=gain, vs=best["key"], delta=format_gain(primary, gain))
    if best["score"]:
        row["delta"] += f" ({100 * gain / abs(best['score']):+.1f}%)"
    mine, theirs = arrays.get("fine_tuned"), arrays.get(best["key"])
    if mine is not None and theirs is not None and len(mine[0]) == len(theirs[0]):
        test = paired_permutation_test(mine[0], mine[1], theirs[1], fn, permutations, seed)
        row["p_value"] = test.p_value
        row["delta"] += f", p={test.p_value:.3g}" + ("" if test.significant() else " (within noise)")
    return rows


def print_comparison(rows: list[dict[str, Any]], primary: str, secondary: str, console: Any) -> None:
    from rich.table import Table

    table = Table(title="Test set: fine-tuned vs base model", show_header=True)
    table.add_column("model")
    table.add_column(primary, justify="right")
    table.add_column(secondary, justify="right")
    table.add_column("vs best baseline", justify="right")
    for r in rows:
        table.add_row(r["model"], score_cell(r), f"{r.get(secondary, float('nan')):.4f}", r.get("delta", ""))
    console.print(table)


def score_cell(row: dict[str, Any]) -> str:
    """The score with its 95% CI when one was computed."""
    ci = f" [{row['ci_low']:.4f}, {row['ci_high']:.4f}]" if "ci_low" in row else ""
    return f"{row['score']:.4f}{ci}"


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
    lines += [f"| {_cell(r['model'])} | {score_cell(r)} | {r.get(secondary, float('nan')):.4f} | "
              f"{r.get('delta', '')} |" for r in rows]
    lines += ["", "All rows are measured in this run on the same test split. Brackets: 95% bootstrap CI over test "
              "examples; p: paired permutation test against the best baseline (p >= 0.05: within noise).", ""]
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
            lines.append(f"| {_cell(name)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                         f"{m['support']} |")
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
              f"leakage {data_report.get('leakage')}. Full report: `data/report.json`."]
    if data_report.get("warnings"):  # the console hides them in quiet mode; the report keeps them
        lines += ["", *(f"- **Warning:** {w}" for w in data_report["warnings"])]
    lines += ["", "## Figures", ""]
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
