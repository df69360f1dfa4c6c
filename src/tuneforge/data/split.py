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
    """Split each stratum (label key) by the ratios, so every split keeps the label distribution.

    Rounding is done by largest remainder per stratum, so small classes still land in train first: a class with
    one example goes to train, with two to train and validation, and so on.
    """
    rng = random.Random(seed)
    strata: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        strata[task.label_key(ex) if stratify else "all"].append(ex)
    splits: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        n = len(group)
        n_val = int(n * ratios[1])
        n_test = int(n * ratios[2])
        n_train = n - n_val - n_test
        if n_train == 0 and n:  # never leave a class out of training
            n_train, n_val = 1, max(0, n_val - 1) if n_val else 0
            n_test = n - n_train - n_val
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
