"""The sweep report: trials table, parameter importances, optimisation-history plots, and the best run against
the default config (report.md, plus report.html beside it)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from tuneforge.hpo.search_space import format_value
from tuneforge.registry.files import write_text


def run_summary(run_dir: Path | None) -> dict[str, Any] | None:
    """Validation/test numbers of a finished run, read back from its folder (never from a live trainer)."""
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    train = metrics.get("train", {})
    return {"run_dir": run_dir, "validation": train.get("best_metric"), "test": metrics.get("test", {}),
            "train_seconds": train.get("train_seconds"), "steps": train.get("steps")}


def importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """Parameter importances (Optuna's default evaluator, PED-ANOVA in Optuna 5) or why there are none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"needs at least 2 complete trials (this study has {len(complete)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study)), None
    except Exception as exc:  # e.g. every trial drew the same value: nothing to attribute
        return {}, f"not computed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def history_png(trials: list[FrozenTrial], metric: str, maximize: bool, reference: float | None,
                path: Path) -> Path:
    """Validation metric per trial (pruned trials at their last reported value), the best so far, and the default
    config's value as a dashed line."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    ax.scatter([t.number for t in done], [t.value for t in done], color="tab:blue", label="complete", zorder=3)
    if pruned:
        ax.scatter([t.number for t in pruned], [t.value for t in pruned], color="tab:gray", marker="x",
                   label="pruned (last evaluation)", zorder=3)
    best: list[tuple[int, float]] = []
    for t in sorted(done, key=lambda t: t.number):
        value = float(t.value)  # type: ignore[arg-type]
        if not best or (value > best[-1][1] if maximize else value < best[-1][1]):
            best.append((t.number, value))
        else:
            best.append((t.number, best[-1][1]))
    if best:
        ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="tab:green", label="best so far")
    if reference is not None:
        ax.axhline(reference, color="tab:red", linestyle="--", label="default config")
    return _finish(fig, ax, path, "trial", f"validation {metric}", "Optimisation history")


def intermediate_png(trials: list[FrozenTrial], metric: str, path: Path) -> Path:
    """Every trial's validation curve by evaluation: what the pruner saw."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        style = {"color": "tab:blue", "alpha": 0.7} if t.state == TrialState.COMPLETE else \
            {"color": "tab:gray", "alpha": 0.6, "linestyle": "--"}
        ax.plot(steps, [t.intermediate_values[s] for s in steps], marker=".", **style)
    ax.plot([], [], color="tab:blue", label="complete")
    ax.plot([], [], color="tab:gray", linestyle="--", label="pruned / failed")
    return _finish(fig, ax, path, "evaluation", f"validation {metric}", "Validation curves of all trials")


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Shared axes, legend and save of the sweep's figures (integer x: trials or evaluations)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def _note(t: FrozenTrial, sweep_dir: Path) -> str:
    run_dir = Path(t.user_attrs.get("run_dir", sweep_dir / f"trial-{t.number:03d}"))
    link = f"[{run_dir.name}]({run_dir.name}/report.md)" if (run_dir / "report.md").is_file() else run_dir.name
    if t.state == TrialState.PRUNED:
        return f"{link}: pruned at evaluation {t.user_attrs.get('pruned_at', {}).get('evaluation', '?')}"
    if t.state == TrialState.FAIL:
        error = str(t.user_attrs.get("error", "")).replace("|", "/").replace("\n", " ")
        return f"{run_dir.name}: {error[:160]}"
    if t.state == TrialState.WAITING:
        return "queued, not started (time limit)"
    if t.state == TrialState.RUNNING:
        return f"running on {t.user_attrs.get('worker', '?')}"
    return link


def _comparison(metric: str, reference: dict[str, Any] | None, best: dict[str, Any] | None,
                best_name: str) -> list[str]:
    rows = [("default config (reference run)", reference), (f"best trial ({best_name})", best)]
    present = [r for _, r in rows if r]
    if not present:
        return ["No finished run to compare."]
    tests = sorted({k for r in present for k in r["test"] if isinstance(r["test"][k], int | float)})
    lines = ["| run | validation " + metric + " | " + " | ".join(f"test {k}" for k in tests) + " | train s | folder |",
             "|---|---:|" + "---:|" * len(tests) + "---:|---|"]
    for label, r in rows:
        if r is None:
            lines.append(f"| {label} | (not available) |" + " |" * len(tests) + " | |")
            continue
        cells = " | ".join(_num(r["test"].get(k)) for k in tests)
        lines.append(f"| {label} | {_num(r['validation'])} | {cells} | {_num(r['train_seconds'], 1)} | "
                     f"{Path(r['run_dir']).name} |")
    if reference and best and reference["validation"] is not None and best["validation"] is not None:
        delta = best["validation"] - reference["validation"]
        lines += ["", f"The best trial is {delta:+.4f} on validation {metric} against the default config. "
                      "Trials were selected on the validation metric only; test scores are shown, never used."]
    return lines


def write_sweep_report(sweep_dir: Path, study: optuna.Study, info: dict[str, Any],
                       reference: dict[str, Any] | None) -> Path:
    """report.md (+ report.html) in the sweep folder. `info`: metric, maximize, config, storage, sampler, pruner,
    workers, trials, params, wall_seconds, best_config, reference_error."""
    from tuneforge.evaluation.html import write_html_report

    metric, maximize = info["metric"], info["maximize"]
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_trial = study.best_trial if complete else None
    best = run_summary(Path(best_trial.user_attrs["run_dir"])) if best_trial else None
    ref_value = reference["validation"] if reference else None
    plots = [history_png(trials, metric, maximize, ref_value, sweep_dir / "optimization_history.png"),
             intermediate_png(trials, metric, sweep_dir / "intermediate_values.png")]
    lines = [f"# Sweep: {study.study_name}", "",
             f"- config: `{info['config']}`",
             f"- study `{study.study_name}` in `{info['storage']}`; sampler {info['sampler']}, "
             f"pruner {info['pruner']}, {info['workers']} worker(s)",
             f"- objective: validation {metric} ({'maximise' if maximize else 'minimise'})",
             f"- trials: {len(trials)} in the study ({info['trials']} requested): "
             f"{states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
             f"{states[TrialState.FAIL]} failed" + (f", {states[TrialState.WAITING]} not started"
                                                    if states[TrialState.WAITING] else ""),
             f"- wall time of this invocation: {info['wall_seconds']:.0f} s", ""]
    if best_trial is not None:
        params = ", ".join(f"`{k}` = {format_value(v)}" for k, v in best_trial.params.items())
        lines += ["## Best trial", "",
                  f"Trial {best_trial.number}: validation {metric} **{best_trial.value:.4f}** with {params}.", "",
                  f"Its full config is in `{info['best_config']}`: `tuneforge train {info['best_config']}` "
                  "trains it again as a normal run.", ""]
    lines += ["## Best run vs the default config", ""]
    if info.get("reference_error"):
        lines += [f"The reference run (default config) failed: {info['reference_error']}", ""]
    lines += [*_comparison(metric, reference, best, f"trial {best_trial.number}" if best_trial else "none"), ""]
    scores, why = importances(study)
    lines += ["## Parameter importances", ""]
    if scores:
        lines += ["Share of the variation in the validation metric explained by each parameter (Optuna "
                  "`get_param_importances`, complete trials only).", "",
                  "| parameter | importance |", "|---|---:|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in scores.items()]
    else:
        lines.append(f"Not available: {why}.")
    lines += ["", "## Optimisation history", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    keys = list(info["params"]) + sorted({k for t in trials for k in t.params} - set(info["params"]))
    lines += ["", "## Trials", "",
              "| trial | state | " + " | ".join(f"`{k}`" for k in keys) + f" | validation {metric} | evaluations "
              "| duration s | run |",
              "|---:|---|" + "---:|" * len(keys) + "---:|---:|---:|---|"]
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        cells = " | ".join(format_value(t.params[k]) if k in t.params else "" for k in keys)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {cells} | {_num(t.value)} | "
                     f"{len(t.intermediate_values)} | {_num(duration, 1)} | {_note(t, sweep_dir)} |")
    path = write_text(sweep_dir / "report.md", "\n".join(lines) + "\n")
    write_html_report(path)
    return path
