"""DPO on Anthropic HH-RLHF (harmless-base): held-out reward accuracy and margin, TinyStories-656K or SmolLM2.

The only HH file available offline (test.jsonl.gz, 2,312 pairs) is split by tuneforge's own seeded 80/10/10 split
into train/validation/test pairs. Reward = beta * (log pi(y|x) - log pi_ref(y|x)); accuracy counts held-out pairs
whose chosen answer gets the higher reward (ties half).

    python bench/dpo_hh.py                    # about 10 minutes on 2 cores
    python bench/dpo_hh.py --algorithms dpo,ipo
    python bench/dpo_hh.py --model smollm2    # SmolLM2-135M-Instruct from its GGUF file: LoRA on a few short pairs

With SmolLM2 (200x TinyStories' parameters, about 20 training tokens/s on one busy core) the run takes the first short
pairs of the file in its order (both transcripts under --max-chars characters) and splits them itself:
--train-pairs, then 8 validation pairs, then --test-pairs.

Writes bench/results/dpo_hh[_smollm2].json and this model's section of docs/bench/dpo_hh.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from _common import MODELS, RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save, write_doc_section

# Per model: what fits in well under 15 minutes on one busy core. TinyStories keeps its original settings.
DEFAULTS: dict[str, dict[str, Any]] = {
    "tinystories": {"method": "full", "lr": 1e-3, "max_length": 384, "batch_size": 16, "threads": None},
    "smollm2": {"method": "lora", "lr": 1e-3, "max_length": 256, "batch_size": 4, "threads": 1},
}


def short_pairs(src: Path, work: Path, max_chars: int, n_train: int, n_test: int) -> dict[str, str]:
    """The first pairs whose two transcripts together are under max_chars, split train / 8 validation / test."""
    with gzip.open(src, "rt") as f:
        rows = [r for r in map(json.loads, f) if len(r["chosen"]) + len(r["rejected"]) < max_chars]
    parts = {"train": rows[:n_train], "validation": rows[n_train:n_train + 8],
             "test": rows[n_train + 8:n_train + 8 + n_test]}
    work.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {name: str(work / f"{name}.jsonl") for name in parts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="tinystories")
    parser.add_argument("--algorithms", default="dpo")
    parser.add_argument("--method", default=None)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--train-pairs", type=int, default=32, help="smollm2 only")
    parser.add_argument("--test-pairs", type=int, default=24, help="smollm2 only")
    parser.add_argument("--max-chars", type=int, default=500, help="smollm2 only")
    args = parser.parse_args()
    settings = DEFAULTS[args.model]
    args.method = args.method or settings["method"]
    args.lr = args.lr or settings["lr"]
    src = require_shared("data/hh_rlhf_harmless_base/test.jsonl.gz")
    folder, label = MODELS[args.model]
    model = require_shared(folder)

    import tuneforge
    from tuneforge.config import parse_config

    out = RESULTS / "dpo_hh"
    data: dict[str, Any] = {"train": str(src)}
    if args.model != "tinystories":
        out = RESULTS / args.model / "runs"  # shared with the other SmolLM2 benchmarks: one GGUF conversion
        data = short_pairs(src, RESULTS / "dpo_hh" / args.model, args.max_chars, args.train_pairs, args.test_pairs)
    rows: list[dict[str, Any]] = []
    for i, algorithm in enumerate(args.algorithms.split(",")):
        name = f"hh-{algorithm}-{args.method}" + ("" if args.model == "tinystories" else f"-{args.model}")
        shutil.rmtree(out / name, ignore_errors=True)
        cfg = parse_config({
            "name": name, "output_dir": str(out), "model": {"path": str(model)},
            "data": {**data, "max_length": settings["max_length"], "skip_invalid": True},
            "task": {"name": "preference", "algorithm": algorithm, "beta": args.beta},
            "method": {"name": args.method} if args.method != "lora" else {"name": "lora", "r": 16, "alpha": 32},
            "training": {"epochs": args.epochs, "learning_rate": args.lr, "batch_size": settings["batch_size"],
                         "seed": 42, "eval_steps": 40, "early_stopping": {"patience": None},
                         "threads": settings["threads"]},
            "tracking": {"mlflow": False},
            "evaluation": {"baselines": ["base_model"] if i == 0 else []},
        })
        result = tuneforge.train(cfg, quiet=True)
        test, info = result.test_metrics, result.train_info
        if result.baselines:
            base = result.baselines["base_model"]
            rows.append({"model": f"{label} (reference policy)", "pairs": int(base["pairs"]),
                         "reward accuracy": base["reward_accuracy"], "reward margin": base["reward_margin"],
                         "log-prob accuracy": base["logprob_accuracy"]})
        rows.append({"model": f"{algorithm.upper()} ({args.method}, beta {args.beta})", "pairs": int(test["pairs"]),
                     "train s": info["train_seconds"], "steps": info["steps"],
                     "reward accuracy": test["reward_accuracy"], "reward margin": test["reward_margin"],
                     "log-prob accuracy": test["logprob_accuracy"]})
    columns = ["model", "pairs", "steps", "train s", "reward accuracy", "reward margin", "log-prob accuracy"]
    print_table("Preference optimisation on HH-RLHF harmless-base (held-out pairs)", rows, columns)
    meta = {"machine": machine(), **vars(args)}
    save("dpo_hh" + ("" if args.model == "tinystories" else f"_{args.model}"), rows, meta)
    command = (f"python bench/dpo_hh.py --model {args.model} --algorithms {args.algorithms} --method {args.method} "
               f"--epochs {args.epochs} --lr {args.lr} --beta {args.beta}")
    split = ("Pairs split 80/10/10 (seed 42) by tuneforge" if args.model == "tinystories" else
             f"The first pairs under {args.max_chars} characters (both transcripts together), in file order: "
             f"{args.train_pairs} train, 8 validation, {args.test_pairs} test")
    text = (f"## {label}\n\n`{command}` on {meta['machine']}, {date.today()}. {split}; rows below are the held-out "
            "test pairs.\n\n" + markdown_table(rows, columns))
    write_doc_section(ROOT / "docs" / "bench" / "dpo_hh.md", args.model, text, "# DPO on HH-RLHF harmless-base")


if __name__ == "__main__":
    main()
