"""The data report: what each step did, label distribution, lengths, truncation and leakage; JSON and a table."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import numpy as np

from tuneforge.tasks.base import Task

Example = dict[str, Any]


def fingerprint(examples: list[Example]) -> str:
    """sha256 of the exact examples (content and order), ignoring provenance."""
    digest = hashlib.sha256()
    for ex in examples:
        clean = {k: v for k, v in ex.items() if not k.startswith("_")}
        digest.update(json.dumps(clean, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def length_stats(lengths: list[int], max_length: int) -> dict[str, Any]:
    if not lengths:
        return {}
    arr = np.asarray(lengths)
    pct = {f"p{q}": int(np.percentile(arr, q)) for q in (50, 90, 95, 99)}
    return {**pct, "mean": round(float(arr.mean()), 1), "max": int(arr.max()),
            "truncated_at_max_length": round(float((arr > max_length).mean()), 4), "max_length": max_length}


def label_distribution(examples: list[Example], task: Task) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for ex in examples:
        counts.update(task.labels_of(ex))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def build_report(splits: dict[str, list[Example]], task: Task, lengths: dict[str, list[int]], max_length: int,
                 **sections: Any) -> dict[str, Any]:
    dist = {name: label_distribution(exs, task) for name, exs in splits.items()}
    train_counts = list(dist["train"].values())
    imbalance = round(max(train_counts) / max(1, min(train_counts)), 2) if train_counts else None
    return {
        "rows": {name: len(exs) for name, exs in splits.items()},
        **sections,
        "label_distribution": dist,
        "imbalance_ratio": imbalance,
        "token_lengths": {name: length_stats(values, max_length) for name, values in lengths.items()},
        "fingerprints": {name: fingerprint(exs) for name, exs in splits.items()},
    }


def render_report(report: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    steps = Table(title="Data preparation", show_header=True)
    steps.add_column("step")
    steps.add_column("rows / removed", justify="right")
    for source, info in report.get("sources", {}).items():
        steps.add_row(f"read {source}", f"{info['records']} ({info['invalid']} invalid)")
    for split, cleaning in report.get("cleaning", {}).items():
        for key, value in cleaning.items():
            if key != "conflict_examples" and value not in ({}, 0):
                steps.add_row(f"{split}: {key.replace('_', ' ')}", str(value))
    for key, value in report.get("leakage", {}).items():
        steps.add_row(f"leakage: {key.replace('_', ' ')}", str(value))
    augmentation = report.get("augmentation")
    if augmentation:
        kinds = ", ".join(f"{k} {v}" for k, v in augmentation["by_kind"].items()) or "none"
        steps.add_row("train: augmented rows added", f"{augmentation['rows_added']} ({kinds})")
    for name, count in report["rows"].items():
        steps.add_row(f"final {name}", str(count))
    console.print(steps)
    lengths = Table(title="Token lengths", show_header=True)
    for col in ("split", "p50", "p95", "max", "truncated"):
        lengths.add_column(col, justify="right")
    for name, stats in report["token_lengths"].items():
        if stats:
            lengths.add_row(name, str(stats["p50"]), str(stats["p95"]), str(stats["max"]),
                            f"{stats['truncated_at_max_length']:.1%}")
    console.print(lengths)
    dist = report["label_distribution"]["train"]
    top = ", ".join(f"{k}={v}" for k, v in list(dist.items())[:6])
    console.print(f"labels: {len(dist)} in train (imbalance ratio {report['imbalance_ratio']}); top: {top}")
    coverage = report.get("tokenizer_coverage")
    if coverage and coverage["examples_affected"]:
        for line in coverage["examples"]:
            console.print(f"  tokenizer loses characters: {line}", highlight=False, markup=False)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False)
