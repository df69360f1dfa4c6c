"""Hyperparameter sweep on BANKING77: 20 trials with the median pruner against 20 without, same search space,
sampler seed and trial count, LoRA on the bundled MiniLM. Reports the best validation accuracy, its test accuracy,
trials completed/pruned and wall time of each arm.

    cd bench && ../.venv/bin/python sweep_banking77.py              # both arms back to back, ~40 min on 2 cores
    cd bench && ../.venv/bin/python sweep_banking77.py --trials 2 --train-size 300 --eval-steps 5  # a quick check

Data: a seeded, stratified subset of train.csv (2,000 train + 300 validation examples, disjoint) and 500
examples of test.csv, one epoch per trial (63 steps, validation every 21), so that 40 trials fit in the time.
Writes bench/results/sweep_banking77.json and docs/bench/sweep_banking77.md (a `## Readings` section written by
hand there is kept on reruns).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

SEED = 42
SEARCH: dict[str, dict[str, Any]] = {
    "training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "training.weight_decay": {"low": 0.0, "high": 0.1},
    "training.warmup_ratio": {"low": 0.0, "high": 0.2},
    "method.r": {"choices": [4, 8, 16]},
    "method.alpha": {"choices": [8, 16, 32]},
    "method.dropout": {"low": 0.0, "high": 0.2},
}
ARMS = {"median pruner": "median", "no pruning": "none"}


def _stratified(rows: list[dict[str, str]], n: int, rng: random.Random) -> tuple[list[dict[str, str]], list[dict]]:
    """n rows taken round-robin over the shuffled labels (so every class is represented), and the rest."""
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    for group in by_label.values():
        rng.shuffle(group)
    labels = sorted(by_label)
    taken: list[dict[str, str]] = []
    while len(taken) < n and any(by_label.values()):
        for label in labels:
            if by_label[label] and len(taken) < n:
                taken.append(by_label[label].pop())
    rest = [row for group in by_label.values() for row in group]
    rng.shuffle(taken)
    return taken, rest


def make_subset(data_dir: Path, out: Path, n_train: int, n_val: int, n_test: int) -> dict[str, Path]:
    def read(name: str) -> list[dict[str, str]]:
        with open(data_dir / name, newline="", encoding="utf-8") as fh:
            return [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(fh)]

    rng = random.Random(SEED)
    train, rest = _stratified(read("train.csv"), n_train, rng)
    validation, _ = _stratified(rest, n_val, rng)
    test, _ = _stratified(read("test.csv"), n_test, rng)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


def config(name: str, out: Path, data: dict[str, Path], pruner: str, trials: int, epochs: float,
           eval_steps: int) -> dict[str, Any]:
    return {
        "name": name, "output_dir": str(out),
        "data": {"train": str(data["train"]), "validation": str(data["validation"]), "test": str(data["test"]),
                 "max_length": 64},
        "task": {"name": "classification"},
        "method": {"name": "lora"},  # defaults: r 8, alpha 16, dropout 0.05, lr 5e-4 (the reference run)
        # 1 torch thread: on 2 cores shared with other work, 2 threads per run spin-wait on each other and ran up
        # to 12x slower in a probe; 1 thread degrades gracefully and keeps the two arms comparable.
        "training": {"epochs": epochs, "batch_size": 32, "eval_batch_size": 32, "eval_steps": eval_steps,
                     "seed": SEED, "threads": 1, "early_stopping": {"metric": "accuracy", "patience": None}},
        "tracking": {"mlflow": False},
        "evaluation": {"baselines": []},
        "sweep": {"params": SEARCH, "trials": trials, "sampler": "tpe", "pruner": pruner, "startup_trials": 5,
                  "workers": 1},
    }


def summarise(arm: str, result: Any, wall: float) -> dict[str, Any]:
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{result.sweep_dir / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    ran = [t for t in trials if t.datetime_start and t.datetime_complete]
    span = (max(t.datetime_complete for t in ran) - min(t.datetime_start for t in ran)).total_seconds()
    best = study.best_trial
    ref = json.loads((result.sweep_dir / "reference" / "metrics.json").read_text())
    test = best.user_attrs["test_metrics"]["accuracy"]
    return {"arm": arm, "best val accuracy": best.value, "its test accuracy": test, "best trial": best.number,
            "complete": result.counts["complete"], "pruned": result.counts["pruned"],
            "failed": result.counts["fail"], "trials wall s": span, "sweep wall s": wall,
            "default config val / test": f"{ref['train']['best_metric']:.4f} / {ref['test']['accuracy']:.4f}",
            "best params": {k: round(v, 6) if isinstance(v, float) else v for k, v in best.params.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--eval-steps", type=int, default=21)  # 63 steps per epoch: 3 evaluations, the last at the end
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    data_dir = require_shared("data/banking77")

    from tuneforge.config import parse_config
    from tuneforge.hpo.sweep import sweep

    out = RESULTS / "sweep_banking77"
    data = make_subset(data_dir, out / "data", args.train_size, args.val_size, args.test_size)
    rows: list[dict[str, Any]] = []
    reference: Path | None = None
    for arm in args.arms.split(","):
        name = "b77-" + ARMS[arm]
        shutil.rmtree(out / f"{name}-sweep", ignore_errors=True)
        if reference is not None:  # the default config is the same in both arms: train its reference run once
            shutil.copytree(reference, out / f"{name}-sweep" / "reference")
        cfg = parse_config(config(name, out, data, ARMS[arm], args.trials, args.epochs, args.eval_steps))
        began = time.perf_counter()
        result = sweep(cfg)
        rows.append(summarise(arm, result, time.perf_counter() - began))
        reference = result.sweep_dir / "reference"
        print_table("BANKING77 sweep (so far)", rows, [c for c in rows[0] if c != "best params"])
    columns = ["arm", "best val accuracy", "its test accuracy", "best trial", "complete", "pruned", "failed",
               "trials wall s", "default config val / test"]
    title = f"BANKING77 sweep, LoRA on MiniLM, {args.trials} trials per arm"
    print_table(title, rows, columns)
    command = "cd bench && ../.venv/bin/python sweep_banking77.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if v != parser.get_default(k))
    meta = {"machine": machine(), "command": command, "search": SEARCH, "args": vars(args)}
    save("sweep_banking77", rows, meta)
    md = ROOT / "docs" / "bench" / "sweep_banking77.md"
    kept = md.read_text().split("\n## Readings", 1) if md.is_file() else []
    readings = "\n## Readings" + kept[1] if len(kept) == 2 else ""
    params = "\n".join(f"| {r['arm']} | " + ", ".join(f"`{k}`={v}" for k, v in r["best params"].items()) + " |"
                       for r in rows)
    md.write_text(
        f"# BANKING77 hyperparameter sweep: median pruning vs none\n\nCommand: `{command}` "
        f"({time.strftime('%Y-%m-%d')}, {meta['machine']}).\n\n"
        f"Data: {args.train_size} train / {args.val_size} validation examples (seeded, stratified, disjoint) from "
        f"train.csv; {args.test_size} from test.csv. LoRA on all-MiniLM-L6-v2, batch 32, {args.epochs:g} epoch(s), "
        f"validation every {args.eval_steps} steps; TPE sampler (seed {SEED}, 5 startup trials); objective: "
        "validation accuracy (test is reported, never used to select).\n\n"
        + markdown_table(rows, columns) + "\n\n`trials wall s`: first trial start to last trial end (the reference "
        "run of the default config is excluded; it is trained once and shared by both arms).\n\n"
        "| arm | best trial's values |\n|---|---|\n" + params + "\n" + readings)
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
