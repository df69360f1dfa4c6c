"""DPO on Anthropic HH-RLHF (harmless-base) with TinyStories-656K: held-out reward accuracy and margin.

The only HH file available offline (test.jsonl.gz, 2,312 pairs) is split by tuneforge's own seeded 80/10/10 split
into train/validation/test pairs. Reward = beta * (log pi(y|x) - log pi_ref(y|x)); accuracy counts held-out pairs
whose chosen answer gets the higher reward (ties half).

    python bench/dpo_hh.py                    # about 10 minutes on 2 cores
    python bench/dpo_hh.py --algorithms dpo,ipo

Writes bench/results/dpo_hh.json and docs/bench/dpo_hh.md.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algorithms", default="dpo")
    parser.add_argument("--method", default="full")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()
    data = require_shared("data/hh_rlhf_harmless_base/test.jsonl.gz")
    model = require_shared("models/tinystories-656k")

    import tuneforge
    from tuneforge.config import parse_config

    out = RESULTS / "dpo_hh"
    rows: list[dict[str, Any]] = []
    for i, algorithm in enumerate(args.algorithms.split(",")):
        name = f"hh-{algorithm}-{args.method}"
        shutil.rmtree(out / name, ignore_errors=True)
        cfg = parse_config({
            "name": name, "output_dir": str(out), "model": {"path": str(model)},
            "data": {"train": str(data), "max_length": 384, "skip_invalid": True},
            "task": {"name": "preference", "algorithm": algorithm, "beta": args.beta},
            "method": {"name": args.method} if args.method != "lora" else {"name": "lora", "r": 16, "alpha": 32},
            "training": {"epochs": args.epochs, "learning_rate": args.lr, "batch_size": 16, "seed": 42,
                         "eval_steps": 40, "early_stopping": {"patience": None}},
            "tracking": {"mlflow": False},
            "evaluation": {"baselines": ["base_model"] if i == 0 else []},
        })
        result = tuneforge.train(cfg, quiet=True)
        test, info = result.test_metrics, result.train_info
        if result.baselines:
            base = result.baselines["base_model"]
            rows.append({"model": "TinyStories-656K (reference policy)", "pairs": int(base["pairs"]),
                         "reward accuracy": base["reward_accuracy"], "reward margin": base["reward_margin"],
                         "log-prob accuracy": base["logprob_accuracy"]})
        rows.append({"model": f"{algorithm.upper()} ({args.method}, beta {args.beta})", "pairs": int(test["pairs"]),
                     "train s": info["train_seconds"], "steps": info["steps"],
                     "reward accuracy": test["reward_accuracy"], "reward margin": test["reward_margin"],
                     "log-prob accuracy": test["logprob_accuracy"]})
    columns = ["model", "pairs", "steps", "train s", "reward accuracy", "reward margin", "log-prob accuracy"]
    print_table("Preference optimisation on HH-RLHF harmless-base (held-out pairs)", rows, columns)
    meta = {"machine": machine(), **vars(args)}
    save("dpo_hh", rows, meta)
    (ROOT / "docs" / "bench" / "dpo_hh.md").write_text(
        f"# DPO on HH-RLHF harmless-base (TinyStories-656K)\n\n`python bench/dpo_hh.py --algorithms "
        f"{args.algorithms} --method {args.method} --epochs {args.epochs} --lr {args.lr} --beta {args.beta}` on "
        f"{meta['machine']}. Pairs split 80/10/10 (seed 42) by tuneforge; rows below are the held-out test pairs."
        "\n\n" + markdown_table(rows, columns) + "\n")


if __name__ == "__main__":
    main()
