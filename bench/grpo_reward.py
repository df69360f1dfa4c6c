"""GRPO with a programmatic reward. Reports the mean training reward over the first and last 10% of steps, and the
mean reward of sampled replies to held-out prompts, base vs tuned.

TinyStories-656K: prompts ask for a story about a word (the `word` column); the reward is the built-in
`tuneforge.tasks.reward_functions:mentions_word` (1 if the reply contains the word).
SmolLM2-135M-Instruct (from its GGUF file) mentions the word almost always, so it gets a task it fails: answer the
Self-Instruct seed instructions in at most --high characters (`length_in_range`, 1 inside [10, high], falling off
linearly outside); the chat model's replies run to the token limit.

    python bench/grpo_reward.py                  # TinyStories, about 10 minutes on 2 cores
    python bench/grpo_reward.py --model smollm2  # LoRA, a few steps: about 20 training tokens/s on one busy core

Writes bench/results/grpo_reward[_smollm2].json and this model's section of docs/bench/grpo_reward.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from _common import MODELS, RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save, write_doc_section

WORDS = ["ball", "dog", "cat", "tree", "cake", "bird", "park", "fish", "boat", "sun", "flower", "car", "bear",
         "apple", "box", "hat", "toy", "frog", "rain", "moon"]
TEMPLATES = ["Tell me a story about a {w}.", "Write a short story with a {w} in it.", "Once there was a {w}. "
             "What happened?", "Can you tell a story about the {w}?", "A story about a {w}, please."]


def prompts(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"prompt": rng.choice(TEMPLATES).format(w=w), "word": w}
            for w in (rng.choice(WORDS) for _ in range(n))]


def instruction_prompts(src: Path, work: Path, n_test: int) -> dict[str, str]:
    """Self-Instruct seed instructions (with their input, where one is given): 2 validation (sampling them costs
    minutes here), n_test test, the rest train, in file order."""
    rows = []
    for line in src.read_text().splitlines():
        task = json.loads(line)
        given = task["instances"][0]["input"] if task["instances"] else ""
        rows.append({"prompt": task["instruction"] + (f"\n\n{given}" if given else "")})
    parts = {"validation": rows[:2], "test": rows[2:2 + n_test], "train": rows[2 + n_test:]}
    for name, part in parts.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {name: str(work / f"{name}.jsonl") for name in parts}


# Per model: what fits in well under 15 minutes on one busy core. TinyStories keeps its original settings.
DEFAULTS: dict[str, dict[str, Any]] = {
    "tinystories": {"steps": 200, "lr": 2e-3, "generations": 8, "batch_size": 32},
    "smollm2": {"steps": 4, "lr": 2e-3, "generations": 4, "batch_size": 8},
}


def _config(args: argparse.Namespace, model: Path, work: Path) -> Any:
    from tuneforge.config import parse_config

    common = {"num_generations": args.generations, "max_new_tokens": 48}
    training = {"max_steps": args.steps, "epochs": 100, "learning_rate": args.lr, "batch_size": args.batch_size,
                "seed": 42, "eval_steps": 1000, "early_stopping": {"patience": None}}
    if args.model == "tinystories":
        data = work / "prompts.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in prompts(600)))
        name, output_dir, files = "grpo-mentions", work / "runs", {"train": str(data)}
        task = {"reward": "tuneforge.tasks.reward_functions:mentions_word", "eval_prompts": 60, "eval_samples": 4}
        method: dict[str, Any] = {"name": "full"}
    else:
        src = require_shared("data/self_instruct/seed_tasks.jsonl")
        files = instruction_prompts(src, work, args.test_prompts)
        name, output_dir = f"grpo-short-{args.model}", RESULTS / args.model / "runs"  # one GGUF conversion for all
        task = {"reward": "tuneforge.tasks.reward_functions:length_in_range",
                "reward_kwargs": {"low": 10, "high": args.high}, "eval_prompts": args.test_prompts, "eval_samples": 2}
        method = {"name": "lora", "r": 16, "alpha": 32}
        training["threads"] = 1
    shutil.rmtree(output_dir / name, ignore_errors=True)
    return parse_config({
        "name": name, "output_dir": str(output_dir), "model": {"path": str(model)},
        "data": {**files, "max_length": 128 if args.model != "tinystories" else 64},
        "task": {"name": "rlhf", **common, **task}, "method": method, "training": training,
        "tracking": {"mlflow": False}, "evaluation": {"baselines": ["base_model"]},
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(MODELS), default="tinystories")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--test-prompts", type=int, default=8, help="smollm2 only")
    parser.add_argument("--high", type=int, default=120, help="smollm2 only: the longest full-reward reply (chars)")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    folder, label = MODELS[args.model]
    model = require_shared(folder)

    import tuneforge

    work = RESULTS / "grpo_reward" / ("" if args.model == "tinystories" else args.model)
    work.mkdir(parents=True, exist_ok=True)
    cfg = _config(args, model, work)
    result = tuneforge.train(cfg, quiet=True)
    history = json.loads((result.run_dir / "history.json").read_text())
    rewards = [h["reward"] for h in history if "reward" in h and "eval_reward" not in h]
    tenth = max(1, len(rewards) // 10)
    base, tuned = result.baselines["base_model"], result.test_metrics
    samples = cfg.task.eval_samples
    rows = []
    if rewards:  # training logs every 10 steps: a run of fewer steps has no training curve
        rows = [{"measure": f"training reward, first 10% of logged steps ({tenth} logs)",
                 "mean reward": sum(rewards[:tenth]) / tenth},
                {"measure": f"training reward, last 10% of logged steps ({tenth} logs)",
                 "mean reward": sum(rewards[-tenth:]) / tenth}]
    rows += [{"measure": f"held-out prompts, base model ({samples} samples each)", "mean reward": base["mean_reward"]},
            {"measure": f"held-out prompts, after GRPO ({samples} samples each)", "mean reward": tuned["mean_reward"]}]
    columns = ["measure", "mean reward"]
    print_table(f"GRPO with {cfg.task.reward}, {label}", rows, columns)
    meta = {"machine": machine(), **vars(args), "train_seconds": result.train_info["train_seconds"],
            "steps": result.train_info["steps"], "reward_curve": rewards}
    save("grpo_reward" + ("" if args.model == "tinystories" else f"_{args.model}"), rows, meta)
    command = (f"python bench/grpo_reward.py --model {args.model} --steps {args.steps} --lr {args.lr} "
               f"--generations {args.generations} --batch-size {args.batch_size}")
    reward = ("`tuneforge.tasks.reward_functions:mentions_word` (1 when the reply contains the prompt's word)"
              if args.model == "tinystories" else
              f"`tuneforge.tasks.reward_functions:length_in_range` with low 10, high {args.high} characters, on "
              f"Self-Instruct seed instructions ({cfg.task.eval_prompts} held out)")
    text = (f"## {label}\n\n`{command}` on {meta['machine']}, {date.today()}; {result.train_info['steps']} steps in "
            f"{result.train_info['train_seconds']:.0f} s. Reward: {reward}.\n\n" + markdown_table(rows, columns))
    write_doc_section(ROOT / "docs" / "bench" / "grpo_reward.md", args.model, text,
                      "# GRPO with a programmatic reward")


if __name__ == "__main__":
    main()
