"""BANKING77 with 10 training examples per intent, with and without `data.augment` (EDA edits, synonyms from
MiniLM's input-embedding neighbours): test accuracy with bootstrap CIs and a paired permutation test.

    OMP_NUM_THREADS=1 nice -n 10 python bench/augment_banking77.py          # about 15 minutes on one idle thread

Protocol: from train.csv, a seeded sample (seed 42) of 10 examples per intent is the training set and another 3 per
intent the validation set (disjoint); test.csv (3,080 examples, 40 per intent) is the test set. Both runs: the
default MiniLM, full fine-tuning, the same seed and the same budget (the same number of optimiser steps, so the
augmented run sees more varied rows, not more updates), the best validation checkpoint kept. The only difference
is `data.augment`. Writes bench/results/augment_banking77.json and docs/bench/augment_banking77.md.
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

PER_INTENT, VALIDATION_PER_INTENT, SEED = 10, 3, 42
AUGMENT = {"n": 4, "edits": ["swap", "delete", "insert", "synonym"], "alpha": 0.1, "neighbours": 10,
           "min_similarity": 0.4}


def few_shot_files(data_dir: Path, out: Path) -> tuple[Path, Path]:
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(data_dir / "train.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_label[row["category"]].append({"text": row["text"], "label": row["category"]})
    rng = random.Random(SEED)
    train, validation = [], []
    for label in sorted(by_label):
        picked = rng.sample(by_label[label], PER_INTENT + VALIDATION_PER_INTENT)
        train += picked[:PER_INTENT]
        validation += picked[PER_INTENT:]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rows in (("train", train), ("validation", validation)):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def config(name: str, train: Path, validation: Path, test: Path, out: Path, steps: int,
           augment: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": name, "output_dir": str(out),
        "data": {"train": str(train), "validation": str(validation), "test": str(test),
                 "max_length": 64, **({"augment": augment} if augment else {})},
        "task": {"name": "classification"}, "method": {"name": "full"},
        "training": {"max_steps": steps, "learning_rate": 2e-4, "batch_size": 32, "seed": SEED, "threads": 1,
                     "eval_steps": max(1, steps // 4), "early_stopping": {"patience": None}},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": []},
    }


def test_predictions(run_dir: Path) -> tuple[Any, Any]:
    import numpy as np

    from tuneforge.registry.loaded_run import load_run

    run = load_run(run_dir)
    rows = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines() if line]
    result = run.task.evaluate(run.model(), run.tokenizer, rows, run.labels, run.max_length, 128)
    return np.asarray(result.references), np.asarray(result.predictions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps of each run (the budget)")
    args = parser.parse_args()
    data_dir = require_shared("data/banking77")

    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.evaluation.stats import accuracy, bootstrap_ci, paired_permutation_test

    work = RESULTS / "augment_banking77"
    shutil.rmtree(work, ignore_errors=True)
    train, validation = few_shot_files(data_dir, work / "data")
    test = work / "data" / "test.jsonl"  # test.csv as JSONL with the same column names
    with open(data_dir / "test.csv", newline="", encoding="utf-8") as fh:
        test.write_text("".join(json.dumps({"text": r["text"], "label": r["category"]}) + "\n"
                                for r in csv.DictReader(fh)), encoding="utf-8")
    rows, predictions = [], {}
    for name, augment in (("no augmentation", None), ("EDA x4 (embedding synonyms)", AUGMENT)):
        run_name = "plain" if augment is None else "augmented"
        began = time.perf_counter()
        tuneforge.train(parse_config(config(run_name, train, validation, test, work / "runs", args.steps, augment)),
                        quiet=True)
        run_dir = work / "runs" / run_name
        report = json.loads((run_dir / "data" / "report.json").read_text())
        refs, preds = test_predictions(run_dir)
        predictions[name] = (refs, preds)
        ci = bootstrap_ci(refs, preds, accuracy, seed=SEED)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        aug = report.get("augmentation", {})
        rows.append({"training data": name, "train rows": report["rows"]["train"],
                     "added (swap/delete/insert/synonym)": "/".join(str(aug.get("by_kind", {}).get(k, 0)) for k in
                                                                    ("swap", "delete", "insert", "synonym"))
                     if aug else "-",
                     "steps": metrics["train"]["steps"], "test accuracy": ci.point,
                     "95% CI": f"[{ci.low:.4f}, {ci.high:.4f}]", "macro-F1": metrics["test"]["macro_f1"],
                     "train s": metrics["train"]["train_seconds"], "total s": time.perf_counter() - began})
        print_table("BANKING77, 10 per intent (so far)", rows, list(rows[0]))
    (refs, plain), (_, augmented) = predictions.values()
    paired = paired_permutation_test(refs, augmented, plain, accuracy, seed=SEED)
    columns = list(rows[0])
    print_table("BANKING77, 10 examples per intent, all-MiniLM-L6-v2 full fine-tuning, test.csv", rows, columns)
    verdict = (f"augmented minus plain: {paired.difference:+.4f} accuracy, paired permutation p = "
               f"{paired.p_value:.4f} ({paired.permutations} permutations)")
    print(verdict)
    meta = {"machine": machine(), "command": f"OMP_NUM_THREADS=1 nice -n 10 python bench/augment_banking77.py "
                                             f"--steps {args.steps}", "augment": AUGMENT, "paired": verdict}
    save("augment_banking77", rows, meta)
    md = ROOT / "docs" / "bench" / "augment_banking77.md"
    md.write_text(f"# Augmentation on BANKING77, 10 examples per intent\n\nCommand: `{meta['command']}` "
                  f"({time.strftime('%Y-%m-%d')}, {meta['machine']}; other work shared the cores, so the seconds "
                  "are upper bounds).\n\n" + markdown_table(rows, columns) + f"\n\n{verdict}.\n")
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
