"""SFT on GSM8K (a subset sized for about 10 minutes on 2 cores): held-out answer loss, exact match and ROUGE-L before
and after, for full fine-tuning and LoRA, and catastrophic forgetting (loss on a reference set of the base model's own
texts) with and without the forgetting guard.

    python bench/sft_gsm8k.py                     # TinyStories-656K, all rows
    python bench/sft_gsm8k.py --rows full,full+replay --train-rows 800
    python bench/sft_gsm8k.py --model smollm2     # SmolLM2-135M-Instruct from its GGUF file, LoRA, a small subset

Writes bench/results/sft_gsm8k[_smollm2].json and this model's section of docs/bench/sft_gsm8k.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from typing import Any

from _common import MODELS, RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save, write_doc_section

# Each row: a method and, optionally, a forgetting mitigation (task.forgetting settings).
ROWS: dict[str, dict[str, Any]] = {
    "full": {"method": {"name": "full"}, "lr": 2e-3},
    "full+replay": {"method": {"name": "full"}, "lr": 2e-3, "forgetting": {"replay_ratio": 0.3}},
    "full+kl": {"method": {"name": "full"}, "lr": 2e-3, "forgetting": {"kl_to_base": 0.5}},
    "lora": {"method": {"name": "lora", "r": 16, "alpha": 32}, "lr": 5e-3},
}
# SmolLM2 already writes fluent answers: a pretrained 135M model wants far smaller steps than a 656K one.
SMOLLM2_LR = {"full": 3e-5, "lora": 1e-3}

# Per model: what fits in well under 15 minutes on one busy core. SmolLM2 (200x the parameters) trains at about
# 20 tokens/s there, so it gets a few dozen questions; TinyStories keeps its original settings for continuity.
# Exact match for SmolLM2 reads the last number of the reply (and of the reference, whose last number is the one
# after "####"): the untuned chat model never writes "####", and a format-only pattern would score it 0 for that.
DEFAULTS: dict[str, dict[str, Any]] = {
    "tinystories": {"rows": ",".join(ROWS), "train_rows": 2000, "val_rows": 0, "test_rows": 200, "epochs": 3,
                    "max_length": 512, "batch_size": 16, "eval_generations": 32, "max_new_tokens": 160,
                    "forgetting": {"samples": 64, "sample_tokens": 128},
                    "answer_pattern": r"####\s*(-?[\d,.]+)", "threads": None},
    "smollm2": {"rows": "lora", "train_rows": 40, "val_rows": 8, "test_rows": 16, "epochs": 1, "max_length": 256,
                "batch_size": 4, "eval_generations": 16, "max_new_tokens": 160,
                "forgetting": {"samples": 8, "sample_tokens": 48},
                "answer_pattern": r"(-?\d[\d,]*(?:\.\d+)?)\D*$", "threads": 1},
}


def subset(src: str, dst: str, n: int, skip: int = 0) -> None:
    with open(src) as f, open(dst, "w") as out:
        for i, line in enumerate(f):
            if i < skip:
                continue
            if i >= skip + n:
                break
            row = json.loads(line)
            out.write(json.dumps({"prompt": row["question"], "completion": row["answer"]}) + "\n")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="tinystories")
    for flag, kind in [("rows", str), ("train-rows", int), ("val-rows", int), ("test-rows", int), ("epochs", float),
                       ("threads", int)]:
        parser.add_argument(f"--{flag}", type=kind, default=None, help="default: the model's setting in DEFAULTS")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def _config(args: argparse.Namespace, name: str, model: str, work: Any, first: bool) -> Any:
    from tuneforge.config import parse_config

    spec = ROWS[name]
    lr = SMOLLM2_LR[spec["method"]["name"]] if args.model == "smollm2" else spec["lr"]
    data = {"train": str(work / "train.jsonl"), "test": str(work / "test.jsonl"), "max_length": args.max_length}
    if args.val_rows:
        data["validation"] = str(work / "validation.jsonl")
    return parse_config({
        "name": f"sft-gsm8k-{name.replace('+', '-')}" + ("" if args.model == "tinystories" else f"-{args.model}"),
        "output_dir": str(_output_dir(args.model, work)), "model": {"path": model}, "data": data,
        "task": {"name": "sft", "answer_pattern": args.answer_pattern, "eval_generations": args.eval_generations,
                 "max_new_tokens": args.max_new_tokens,
                 "forgetting": {**args.forgetting, **spec.get("forgetting", {})}},
        "method": spec["method"],
        "training": {"epochs": args.epochs, "learning_rate": lr, "batch_size": args.batch_size, "seed": 42,
                     "eval_steps": 50, "early_stopping": {"patience": None}, "threads": args.threads},
        "tracking": {"mlflow": False},
        "evaluation": {"baselines": ["base_model"] if first else []},
    })


def _output_dir(model: str, work: Any) -> Any:
    # All SmolLM2 benchmarks share one workspace, so its GGUF is converted (about 2 minutes here) once for all.
    return work / "runs" if model == "tinystories" else RESULTS / model / "runs"


def main() -> None:
    args = _args()
    data = require_shared("data/gsm8k")
    folder, label = MODELS[args.model]
    model = require_shared(folder)

    import tuneforge

    work = RESULTS / "sft_gsm8k"
    work.mkdir(parents=True, exist_ok=True)
    # Validation rows come after the training rows, so no question is in both.
    subset(str(data / "train.jsonl"), str(work / "train.jsonl"), args.train_rows)
    subset(str(data / "train.jsonl"), str(work / "validation.jsonl"), args.val_rows, skip=args.train_rows)
    subset(str(data / "test.jsonl"), str(work / "test.jsonl"), args.test_rows)
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(args.rows.split(",")):
        cfg = _config(args, name, str(model), work, first=i == 0)
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
        result = tuneforge.train(cfg, quiet=True)
        info, test = result.train_info, result.test_metrics
        if result.baselines:
            base = result.baselines["base_model"]
            rows.append({"model": f"{label} (base)", "answer loss": base["loss"],
                         "exact match": base["exact_match"], "ROUGE-L": base["rouge_l"],
                         "reference loss": base["reference_loss"]})
        forgetting = info["forgetting"]
        rows.append({"model": f"SFT {name}", "trainable %": 100 * info["trainable_params"] / info["total_params"],
                     "train s": info["train_seconds"], "answer loss": test["loss"],
                     "exact match": test["exact_match"], "ROUGE-L": test["rouge_l"],
                     "reference loss": forgetting["reference_loss_after"], "forgetting": forgetting["change"]})
    columns = ["model", "trainable %", "train s", "answer loss", "exact match", "ROUGE-L", "reference loss",
               "forgetting"]
    print_table(f"SFT on GSM8K, {label}", rows, columns)
    meta = {"machine": machine(), "model": label, "train_rows": args.train_rows, "val_rows": args.val_rows,
            "test_rows": args.test_rows, "epochs": args.epochs, "generations": args.eval_generations}
    save("sft_gsm8k" + ("" if args.model == "tinystories" else f"_{args.model}"), rows, meta)
    command = "python bench/sft_gsm8k.py" + ("" if args.model == "tinystories" else f" --model {args.model}")
    held_out = f", {args.val_rows} validation questions after them" if args.val_rows else " (10% held out)"
    text = (f"## {label}\n\n`{command}` on {meta['machine']}, {date.today()}; {args.train_rows} training "
            f"questions{held_out}, {args.test_rows} test questions from test.jsonl ({args.eval_generations} "
            f"generated for exact match / ROUGE-L), {args.epochs} epochs.\n\n" + markdown_table(rows, columns))
    write_doc_section(ROOT / "docs" / "bench" / "sft_gsm8k.md", args.model, text, "# SFT on GSM8K")


if __name__ == "__main__":
    main()
