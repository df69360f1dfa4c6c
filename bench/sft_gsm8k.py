"""SFT of TinyStories-656K on GSM8K (a subset sized for about 10 minutes on 2 cores): held-out answer loss before and
after, for full fine-tuning and LoRA, and catastrophic forgetting (loss on a reference set of the base model's own
stories) with and without the forgetting guard.

    python bench/sft_gsm8k.py                     # all rows
    python bench/sft_gsm8k.py --rows full,full+replay --train-rows 800

Writes bench/results/sft_gsm8k.json and docs/bench/sft_gsm8k.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

# Each row: a method and, optionally, a forgetting mitigation (task.forgetting settings).
ROWS: dict[str, dict[str, Any]] = {
    "full": {"method": {"name": "full"}, "lr": 2e-3},
    "full+replay": {"method": {"name": "full"}, "lr": 2e-3, "forgetting": {"replay_ratio": 0.3}},
    "full+kl": {"method": {"name": "full"}, "lr": 2e-3, "forgetting": {"kl_to_base": 0.5}},
    "lora": {"method": {"name": "lora", "r": 16, "alpha": 32}, "lr": 5e-3},
}


def subset(src: str, dst: str, n: int) -> None:
    with open(src) as f, open(dst, "w") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            row = json.loads(line)
            out.write(json.dumps({"prompt": row["question"], "completion": row["answer"]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=3)
    args = parser.parse_args()
    data = require_shared("data/gsm8k")
    model = require_shared("models/tinystories-656k")

    import tuneforge
    from tuneforge.config import parse_config

    work = RESULTS / "sft_gsm8k"
    work.mkdir(parents=True, exist_ok=True)
    subset(str(data / "train.jsonl"), str(work / "train.jsonl"), args.train_rows)
    subset(str(data / "test.jsonl"), str(work / "test.jsonl"), args.test_rows)
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(args.rows.split(",")):
        spec = ROWS[name]
        run_name = f"sft-gsm8k-{name.replace('+', '-')}"
        shutil.rmtree(work / "runs" / run_name, ignore_errors=True)
        cfg = parse_config({
            "name": run_name, "output_dir": str(work / "runs"), "model": {"path": str(model)},
            "data": {"train": str(work / "train.jsonl"), "test": str(work / "test.jsonl"), "max_length": 512},
            "task": {"name": "sft", "answer_pattern": r"####\s*(-?[\d,.]+)", "eval_generations": 32,
                     "max_new_tokens": 160,
                     "forgetting": {"samples": 64, "sample_tokens": 128, **spec.get("forgetting", {})}},
            "method": spec["method"],
            "training": {"epochs": args.epochs, "learning_rate": spec["lr"], "batch_size": 16, "seed": 42,
                         "eval_steps": 50, "early_stopping": {"patience": None}},
            "tracking": {"mlflow": False},
            "evaluation": {"baselines": ["base_model"] if i == 0 else []},
        })
        result = tuneforge.train(cfg, quiet=True)
        info, test = result.train_info, result.test_metrics
        if result.baselines:
            base = result.baselines["base_model"]
            rows.append({"model": "TinyStories-656K (base)", "answer loss": base["loss"],
                         "exact match": base["exact_match"], "ROUGE-L": base["rouge_l"],
                         "reference loss": base["reference_loss"]})
        forgetting = info["forgetting"]
        rows.append({"model": f"SFT {name}", "trainable %": 100 * info["trainable_params"] / info["total_params"],
                     "train s": info["train_seconds"], "answer loss": test["loss"],
                     "exact match": test["exact_match"], "ROUGE-L": test["rouge_l"],
                     "reference loss": forgetting["reference_loss_after"], "forgetting": forgetting["change"]})
    columns = ["model", "trainable %", "train s", "answer loss", "exact match", "ROUGE-L", "reference loss",
               "forgetting"]
    print_table("SFT on GSM8K, TinyStories-656K", rows, columns)
    meta = {"machine": machine(), "train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs}
    save("sft_gsm8k", rows, meta)
    doc = ROOT / "docs" / "bench" / "sft_gsm8k.md"
    doc.write_text(f"# SFT on GSM8K (TinyStories-656K)\n\n`python bench/sft_gsm8k.py` on {meta['machine']}; "
                   f"{args.train_rows} training questions (10% held out for validation), {args.test_rows} test "
                   f"questions from test.jsonl, {args.epochs} epochs.\n\n" + markdown_table(rows, columns) + "\n")


if __name__ == "__main__":
    main()
