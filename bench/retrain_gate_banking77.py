"""The retrain gate on BANKING77 with the default MiniLM: a champion trained on little data, a retrain on new data
(with replay) that must pass, and a planted model trained on the same new data with shuffled labels that must be
refused.

    OMP_NUM_THREADS=1 python bench/retrain_gate_banking77.py            # about 10 minutes on 2 busy cores

Intents: the first `--intents` of categories.json. Champion: `--old-per-intent` training examples per intent of the
first half of them and `--weak-per-intent` of the second half from train.csv (85/15 train/validation): the traffic
later shifts toward intents it barely saw. Its test set: `--test-per-intent` per intent of test.csv (the frozen old
test). New data: the next `--new-per-intent` per intent of train.csv, split 80/10/10 by retrain (seed 42). The gate: no
significant regression on the old test set beyond 0.01 accuracy, a significant gain on the new test split
(paired approximate-randomisation tests, alpha 0.05). Writes bench/results/retrain_gate_banking77.json and
docs/bench/retrain_gate_banking77.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import time
from pathlib import Path

from _common import ROOT, machine, markdown_table, print_table, require_shared, save


def by_intent(path: Path, intents: list[str]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {i: [] for i in intents}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in out:
                out[row["category"]].append({"text": row["text"], "label": row["category"]})
    return out


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intents", type=int, default=10)
    ap.add_argument("--old-per-intent", type=int, default=8)
    ap.add_argument("--weak-per-intent", type=int, default=1, help="examples the champion saw of the second half "
                                                                    "of the intents (the shift the new data fixes)")
    ap.add_argument("--new-per-intent", type=int, default=40)
    ap.add_argument("--test-per-intent", type=int, default=30)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/tuneforge-retrain-gate"))
    args = ap.parse_args()
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.monitoring.retrain import retrain

    data = require_shared("data/banking77")
    intents = json.loads((data / "categories.json").read_text())[: args.intents]
    train, test = by_intent(data / "train.csv", intents), by_intent(data / "test.csv", intents)
    rng = random.Random(42)
    for rows in train.values():
        rng.shuffle(rows)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    seen = {i: args.old_per_intent if k < len(intents) // 2 else args.weak_per_intent for k, i in enumerate(intents)}
    old = write(args.out / "old.jsonl", [r for i in intents for r in train[i][: seen[i]]])
    old_test = write(args.out / "old_test.jsonl", [r for i in intents for r in test[i][: args.test_per_intent]])
    new_rows = [r for i in intents for r in train[i][seen[i]: seen[i] + args.new_per_intent]]
    rng.shuffle(new_rows)
    new = write(args.out / "new.jsonl", new_rows)
    labels = [r["label"] for r in new_rows]
    rng.shuffle(labels)
    shuffled = write(args.out / "shuffled.jsonl",
                     [{**r, "label": lab} for r, lab in zip(new_rows, labels, strict=True)])
    space = args.out / "runs"
    cfg = {"name": "champion", "output_dir": str(space),
           "data": {"train": str(old), "test": str(old_test), "max_length": 64,
                    "split": {"train": 0.85, "validation": 0.15, "test": 0.0}},
           "task": {"name": "classification"}, "method": {"name": "full"},
           "training": {"epochs": 8, "learning_rate": 2e-4, "batch_size": 16, "threads": 1, "seed": 42},
           "evaluation": {"baselines": []}, "tracking": {"registered_name": "banking-intents"}}
    start = time.perf_counter()
    tuneforge.train(parse_config(cfg), quiet=True)
    ra.promote("banking-intents", 1, workspace=space, reason="bench: first model")
    sets = [f"training.epochs={args.epochs:g}", "training.threads=1"]
    good = retrain("banking-intents", new, replay=0.3, workspace=space, name="retrain", overrides=sets)
    worse = retrain("banking-intents", shuffled, replay=0.0, workspace=space, name="planted-shuffled",
                    overrides=sets)
    rows = []
    for label, result in (("retrain (replay 0.3)", good), ("planted: shuffled labels", worse)):
        for r in result.decision.table:
            rows.append({"candidate": label, "set": r["set"], "examples": r["examples"],
                         "champion acc": r["champion"], "candidate acc": r["candidate"],
                         "difference": r["difference"], "p": r["p_value"],
                         "gate": "passed" if result.decision.passed else "refused"})
    columns = ["candidate", "set", "examples", "champion acc", "candidate acc", "difference", "p", "gate"]
    print_table("retrain gate on BANKING77", rows, columns)
    seconds = time.perf_counter() - start
    meta = {"machine": machine(), "seconds": round(seconds, 1), "intents": intents, "args": vars(args) | {
        "out": str(args.out)}, "good_counts": good.counts, "worse_counts": worse.counts,
        "good_reasons": good.decision.reasons, "worse_reasons": worse.decision.reasons}
    save("retrain_gate_banking77", rows, meta)
    doc = ROOT / "docs" / "bench" / "retrain_gate_banking77.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"# Retrain gate on BANKING77\n\n`OMP_NUM_THREADS=1 python bench/retrain_gate_banking77.py` "
                   f"({machine()}; other work shared the cores; {seconds:.0f} s in all).\n\n"
                   f"{len(intents)} intents; champion: {args.old_per_intent} examples per intent for the first half, "
                   f"{args.weak_per_intent} for the second (full fine-tune of the default MiniLM); new data: "
                   f"{args.new_per_intent} per intent, split 80/10/10 by retrain; "
                   f"old test: {args.test_per_intent} per intent of test.csv.\n\n"
                   + markdown_table(rows, columns) + "\n\nReasons (retrain):\n\n"
                   + "".join(f"- {r}\n" for r in good.decision.reasons) + "\nReasons (planted):\n\n"
                   + "".join(f"- {r}\n" for r in worse.decision.reasons)
                   + "\nThe planted model's new test split carries the shuffled labels too, so both models score near "
                     "chance there; the old test set is what refuses it. Replay is capped at the champion's whole "
                     "training split.\n\nReplay counts (retrain): "
                   + json.dumps(good.counts) + "\n", encoding="utf-8")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
