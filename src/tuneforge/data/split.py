"""Seeded, stratified train/validation/test split, and leakage detection between splits."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from tuneforge.data.clean import dedupe_key
from tuneforge.tasks.base import Task

Example = dict[str, Any]


def stratified_split(examples: list[Example], task: Task, ratios: tuple[float, float, float], seed: int,
                     stratify: bool = True) -> dict[str, list[Example]]:
    """Split each stratum (label key) so every split keeps the label distribution, seeded.

    Validation and test sizes follow the ratios over the *running* total of strata, so rounding errors do not pile
    up: 100 classes of 9 examples at 80/10/10 give exactly 90 validation and 90 test examples (per-class rounding
    would give none). A class always keeps at least one training example.
    """
    rng = random.Random(seed)
    strata: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        strata[task.label_key(ex) if stratify else "all"].append(ex)
    splits: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    seen = taken_val = taken_test = 0
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        n = len(group)
        seen += n
        n_val = max(0, round(seen * ratios[1]) - taken_val)
        n_test = max(0, round(seen * ratios[2]) - taken_test)
        while n_val + n_test > n - 1 and n_val + n_test > 0:  # keep one example for training
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        taken_val += n_val
        taken_test += n_test
        n_train = n - n_val - n_test
        splits["train"] += group[:n_train]
        splits["validation"] += group[n_train:n_train + n_val]
        splits["test"] += group[n_train + n_val:]
    for name in splits:
        rng.shuffle(splits[name])
    return splits


def find_leakage(splits: dict[str, list[Example]], task: Task) -> dict[str, int]:
    """Count training examples whose normalised text also appears in validation or test."""
    held = {name: {dedupe_key(task.text_of(ex)) for ex in splits.get(name, [])} for name in ("validation", "test")}
    report = {}
    for name, keys in held.items():
        report[f"train_in_{name}"] = sum(1 for ex in splits["train"] if dedupe_key(task.text_of(ex)) in keys)
    val_test = held["validation"] & held["test"]
    report["validation_in_test"] = len(val_test)
    return report


def remove_leakage(splits: dict[str, list[Example]], task: Task) -> dict[str, list[Example]]:
    """Drop leaked examples from train only: validation and test stay exactly as they are."""
    held = {dedupe_key(task.text_of(ex)) for name in ("validation", "test") for ex in splits.get(name, [])}
    train = [ex for ex in splits["train"] if dedupe_key(task.text_of(ex)) not in held]
    return {"train": train, "validation": splits.get("validation", []), "test": splits.get("test", [])}
