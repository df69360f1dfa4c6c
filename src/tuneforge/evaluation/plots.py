"""Report figures (matplotlib, no display): confusion matrix, per-class F1 bars, learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def confusion_matrix_png(y_true: list[int], y_pred: list[int], labels: list[str], path: Path) -> Path:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(24, 3 + 0.3 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7 if len(labels) > 20 else 9)
    ax.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) > 20 else 9)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test set, row-normalised colour)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_class_f1_png(per_class: dict[str, dict[str, float]], path: Path, title: str = "F1 per class") -> Path:
    names = sorted(per_class, key=lambda k: per_class[k]["f1"])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(names) + 1)))
    ax.barh(names, [per_class[n]["f1"] for n in names], color="#4C72B0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7 if len(names) > 30 else 9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curve_png(history: list[dict[str, Any]], metric: str, path: Path) -> Path:
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#4C72B0", alpha=0.8)
    if evals:
        ax.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="validation loss",
                color="#DD8452")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    key = f"eval_{metric}"
    if any(key in h for h in evals):
        ax2.plot([h["step"] for h in evals if key in h], [h[key] for h in evals if key in h], "s--",
                 color="#55A868", label=f"validation {metric}")
        ax2.set_ylabel(metric)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right")
    ax.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_KIND_COLOURS = {"baseline": "#8C8C8C", "fine_tuned": "#4C72B0", "combined": "#55A868"}


def comparison_png(rows: list[dict[str, Any]], metric: str, path: Path, confidence: int = 95) -> Path:
    """Each system's test score with its bootstrap confidence interval."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    names = [r["system"] for r in rows]
    values = np.array([r[metric] for r in rows])
    err = np.array([[v - r["ci_low"] for v, r in zip(values, rows, strict=True)],
                    [r["ci_high"] - v for v, r in zip(values, rows, strict=True)]])
    ax.barh(names, values, xerr=err, capsize=3, color=[_KIND_COLOURS.get(r["kind"], "#999") for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (test, {confidence}% bootstrap CI)")
    ax.set_title("Fine-tuning vs prompting vs retrieval")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _KIND_COLOURS.values()]
    ax.legend(handles, ["no training", "fine-tuned", "fine-tuned + retrieval"], loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_scatter_png(rows: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """Score against per-example latency: the trade-off a deployment has to pick from."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.errorbar(r["latency_p50_ms"], r[metric], yerr=[[r[metric] - r["ci_low"]], [r["ci_high"] - r[metric]]],
                    fmt="o", color=_KIND_COLOURS.get(r["kind"], "#999"), capsize=3)
        ax.annotate(r["system"][:40], (r["latency_p50_ms"], r[metric]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("latency per example, p50 (ms, log scale)")
    ax.set_ylabel(metric)
    ax.set_title("Score vs serving cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
