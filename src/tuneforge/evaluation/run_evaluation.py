"""The evaluate stage of a run: the tuned model and the base-model baselines on the same test split, the comparison
table (with CIs and a paired test where per-example outputs exist), plots and report.md/html."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunEvaluation:
    test: Any  # tasks.base.EvalResult of the tuned model
    baselines: dict[str, Any]
    rows: list[dict[str, Any]]
    primary: str
    secondary: str | None


def secondary_metric(metrics: dict[str, float], primary: str) -> str | None:
    """The second column of the table: accuracy where there is one, else the first other metric, else none."""
    if "accuracy" in metrics and primary != "accuracy":
        return "accuracy"
    return next((k for k in metrics if k != primary), None)


def evaluate_run(recipe: Any, model: Any, data: Any, console: Any) -> RunEvaluation:
    from tuneforge.evaluation.report import comparison_rows, print_comparison

    cfg, task, tokenizer, labels = recipe.cfg, recipe.task, recipe.tokenizer, data.labels
    max_len = cfg.data.max_length
    with console.status(f"evaluating on {len(data.splits['test'])} test examples"):
        test = task.evaluate(model, tokenizer, data.splits["test"], labels, max_len, cfg.training.eval_batch_size)
    names = list(task.baseline_names) if cfg.evaluation.baselines == "auto" else cfg.evaluation.baselines
    with console.status(f"measuring base-model baselines ({', '.join(names) or 'none'})"):
        base = task.baselines(recipe.model_path, tokenizer, data.splits, labels, max_len, names)
    primary = task.primary_metric
    secondary = secondary_metric(test.metrics, primary)
    rows = comparison_rows(cfg.method.name, test, base, primary, secondary or primary, task.ceiling_names,
                           seed=cfg.training.seed)
    print_comparison(rows, primary, secondary or primary, console)
    return RunEvaluation(test, base, rows, primary, secondary)


def forgetting_facts(train_info: dict[str, Any], test_metrics: dict[str, float]) -> dict[str, Any]:
    """Reference-set loss before and after training (generative runs with a forgetting guard)."""
    if "reference_loss" not in test_metrics:
        return {}
    before, after = train_info.get("reference_loss_before"), test_metrics["reference_loss"]
    return {"forgetting": {"reference_loss_before": before, "reference_loss_after": after,
                           "change": after - before if before is not None else None}}


def write_run_reports(run_dir: Path, recipe: Any, result: RunEvaluation, history: list[dict[str, Any]],
                      train_info: dict[str, Any], data: Any) -> Path:
    from tuneforge.evaluation.html import write_html_report
    from tuneforge.evaluation.plots import learning_curve_png
    from tuneforge.evaluation.report import write_report

    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = [learning_curve_png(history, recipe.metric, plots_dir / "learning_curve.png"),
             *recipe.task.plots(result.test, data.labels, plots_dir)]
    report = write_report(run_dir / "report.md", recipe.cfg, result.rows, result.primary,
                          result.secondary or result.primary, result.test, result.baselines, train_info,
                          data.report, plots)
    write_html_report(report)
    return report
