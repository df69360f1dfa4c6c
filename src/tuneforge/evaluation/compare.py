"""`tuneforge compare`: fine-tuned runs against prompt-engineering and retrieval baselines, on one test split, with
confidence intervals, a paired significance test against the best baseline, costs, and a recommendation.

Each task that can be compared registers a function producing `Entrant`s (its rows' raw outputs and costs); this
module scores them all the same way, so the statistics and the recommendation do not depend on the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.evaluation.compare_types import CompareInputs, ComparisonResult, Entrant


def _load_runs(paths: list[str], cfg: Any, fingerprints: dict[str, str]) -> list[Any]:
    from tuneforge.registry.files import read_json
    from tuneforge.registry.loaded_run import load_run

    runs = []
    for path in paths:
        run = load_run(path)
        if run.config.task.name != cfg.task.name:
            raise ConfigError(f"run {path} is a {run.config.task.name} run, this config is {cfg.task.name}",
                              key="compare.runs", fix="compare runs of the same task")
        saved = read_json(Path(path) / "data" / "report.json")["fingerprints"].get("test")
        if saved != fingerprints["test"]:
            raise RunError(f"run {path} was tested on a different test split than this config produces",
                           fix="compare with the run's own config.yaml (same data, split and seed)")
        runs.append(run)
    return runs


def score_rows(refs: np.ndarray, entrants: list[Entrant], metric: str, higher_is_better: bool, cmp: Any,
               seed: int) -> list[dict[str, Any]]:
    """Every row: metric with a bootstrap CI, and a paired permutation test against the best baseline."""
    from tuneforge.evaluation.resources import percentile
    from tuneforge.evaluation.stats import accuracy, bootstrap_ci, metric_fn, paired_permutation_test

    fn = metric_fn(metric)
    sign = 1.0 if higher_is_better else -1.0
    cis = {e.key: bootstrap_ci(refs, e.outputs, fn, cmp.bootstrap_samples, cmp.confidence, seed) for e in entrants}
    baselines = [e for e in entrants if e.kind == "baseline"]
    best = max(baselines, key=lambda e: sign * cis[e.key].point) if baselines else None
    by_key = {e.key: e for e in entrants}
    rows = []
    for e in entrants:
        ci = cis[e.key]
        row: dict[str, Any] = {
            "key": e.key, "system": e.name, "kind": e.kind, metric: ci.point, "ci_low": ci.low, "ci_high": ci.high,
            "train_seconds": e.train_seconds, "latency_p50_ms": percentile(e.latencies_ms, 50),
            "latency_p95_ms": percentile(e.latencies_ms, 95), "peak_memory_mb": round(e.peak_memory_mb, 1),
            "trainable_params": e.trainable_params, "artifact_bytes": e.artifact_bytes, "note": e.note}
        if metric in ("macro_f1", "weighted_f1"):
            row["accuracy"] = accuracy(refs, e.outputs)
        for name, values in e.secondary.items():  # means of per-example values, each with its interval
            sec = bootstrap_ci(np.zeros(len(values)), values, metric_fn(name), cmp.bootstrap_samples,
                               cmp.confidence, seed)
            row.setdefault("secondary", {})[name] = {"value": sec.point, "ci_low": sec.low, "ci_high": sec.high}
        if best is not None and e.key != best.key:
            test = paired_permutation_test(refs, e.outputs, best.outputs, fn, cmp.permutations, seed)
            row.update(vs=best.key, delta=test.difference, p_value=test.p_value)
        elif best is not None:
            row["best_baseline"] = True
        if e.base is not None and e.base in by_key:  # does retrieval help this run?
            test = paired_permutation_test(refs, e.outputs, by_key[e.base].outputs, fn, cmp.permutations, seed)
            row.update(delta_vs_run=test.difference, p_vs_run=test.p_value)
        rows.append(row)
    return rows


def compare(config: Any, *, runs: list[str] | None = None, overrides: list[str] | None = None,
            console: Any = None, out_dir: str | Path | None = None) -> ComparisonResult:
    """Measure the config's baselines and the given fine-tuned runs on its test split; write report.md/html."""
    from tuneforge.config import resolve_config
    from tuneforge.console import console_or_default
    from tuneforge.data.prepare import prepare_data
    from tuneforge.evaluation.compare_report import recommend, write_comparison_report
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.registry.files import write_json
    from tuneforge.tasks import TASKS

    cfg = resolve_config(config, overrides)
    con = console_or_default(console)
    task = TASKS.get(cfg.task.name)(cfg.task)
    how = task.comparison
    if how is None:
        comparable = [t.name for t in TASKS if t.comparison is not None]
        raise ConfigError(f"compare does not support task {cfg.task.name!r} yet", key="task.name",
                          fix=f"compare works for: {', '.join(comparable)}")
    build, metric, higher = how.entrants(), how.metric, how.higher_is_better
    model_path = resolve_model_path(cfg.model, cfg.output_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code, cfg.model.revision)
    task.prepare_tokenizer(tokenizer)
    with con.status("preparing data (same cleaning and split as training)"):
        data = prepare_data(cfg, task, tokenizer)
    paths = list(runs if runs is not None else cfg.compare.runs)
    loaded = _load_runs(paths, cfg, data.report["fingerprints"])
    out = Path(out_dir) if out_dir else Path(cfg.output_dir) / f"{cfg.name}-compare"
    out.mkdir(parents=True, exist_ok=True)
    con.print(f"comparing on {len(data.splits['test'])} test examples: baselines + {len(loaded)} fine-tuned run(s)")
    refs, entrants = build(CompareInputs(cfg, task, data, model_path, loaded, out, con))
    with con.status(f"bootstrap CIs ({cfg.compare.bootstrap_samples}) and paired tests"):
        rows = score_rows(refs, entrants, metric, higher, cfg.compare, cfg.training.seed)
    advice = recommend(rows, metric, higher, len(refs))
    result = ComparisonResult(out, metric, rows, advice, {"test_examples": len(refs), "task": cfg.task.name,
                                                          "runs": [str(r.path) for r in loaded]})
    write_json(out / "comparison.json", {"metric": metric, "higher_is_better": higher, "rows": rows,
                                         "recommendation": advice, **result.extra,
                                         "settings": cfg.compare.model_dump(mode="json")})
    write_comparison_report(out, cfg, result, higher)
    _print(rows, metric, advice, con)
    con.print(f"report: {out / 'report.html'}")
    return result


def _print(rows: list[dict[str, Any]], metric: str, advice: str, con: Any) -> None:
    from rich.table import Table

    from tuneforge.evaluation.compare_report import fmt_delta, fmt_seconds

    table = Table(title="Test set: fine-tuning vs prompting vs retrieval")
    for col in ("system", f"{metric} [95% CI]", "vs best baseline", "train", "p50 / p95 ms", "trainable"):
        table.add_column(col, justify="left" if col == "system" else "right")
    secondary = list(rows[0].get("secondary", {})) if rows else []
    for name in secondary:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(r["system"], f"{r[metric]:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]", fmt_delta(r, metric),
                      fmt_seconds(r["train_seconds"]), f"{r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f}",
                      f"{r['trainable_params']:,}", *(f"{r['secondary'][n]['value']:.4f}" for n in secondary))
    con.print(table)
    con.print(f"[bold]recommendation:[/bold] {advice}")
