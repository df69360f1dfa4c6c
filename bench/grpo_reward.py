"""GRPO with a programmatic reward on TinyStories-656K: the story must mention a given word.

Prompts ask for a story about a word (the `word` column); the reward is tuneforge's built-in
`tuneforge.tasks.reward_functions:mentions_word` (1 if the reply contains the word). Reports the mean training reward
over the
first and last 10% of steps, and the mean reward of sampled replies to held-out prompts, base vs tuned.

    python bench/grpo_reward.py              # about 10 minutes on 2 cores

Writes bench/results/grpo_reward.json and docs/bench/grpo_reward.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

WORDS = ["ball", "dog", "cat", "tree", "cake", "bird", "park", "fish", "boat", "sun", "flower", "car", "bear",
         "apple", "box", "hat", "toy", "frog", "rain", "moon"]
TEMPLATES = ["Tell me a story about a {w}.", "Write a short story with a {w} in it.", "Once there was a {w}. "
             "What happened?", "Can you tell a story about the {w}?", "A story about a {w}, please."]


def prompts(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"prompt": rng.choice(TEMPLATES).format(w=w), "word": w}
            for w in (rng.choice(WORDS) for _ in range(n))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = require_shared("models/tinystories-656k")

    import tuneforge
    from tuneforge.config import parse_config

    work = RESULTS / "grpo_reward"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "prompts.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in prompts(600)))
    shutil.rmtree(work / "runs" / "grpo-mentions", ignore_errors=True)
    cfg = parse_config({
        "name": "grpo-mentions", "output_dir": str(work / "runs"), "model": {"path": str(model)},
        "data": {"train": str(data), "max_length": 64},
        "task": {"name": "rlhf", "reward": "tuneforge.tasks.reward_functions:mentions_word",
                 "num_generations": args.generations, "max_new_tokens": 48, "eval_prompts": 60, "eval_samples": 4},
        "method": {"name": "full"},
        "training": {"max_steps": args.steps, "epochs": 100, "learning_rate": args.lr,
                     "batch_size": args.batch_size, "seed": 42, "eval_steps": 1000,
                     "early_stopping": {"patience": None}},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": ["base_model"]},
    })
    result = tuneforge.train(cfg, quiet=True)
    history = json.loads((result.run_dir / "history.json").read_text())
    rewards = [h["reward"] for h in history if "reward" in h and "eval_reward" not in h]
    tenth = max(1, len(rewards) // 10)
    first, last = sum(rewards[:tenth]) / tenth, sum(rewards[-tenth:]) / tenth
    base, tuned = result.baselines["base_model"], result.test_metrics
    rows = [{"measure": f"training reward, first 10% of logged steps ({tenth} logs)", "mean reward": first},
            {"measure": f"training reward, last 10% of logged steps ({tenth} logs)", "mean reward": last},
            {"measure": "held-out prompts, base model (4 samples each)", "mean reward": base["mean_reward"]},
            {"measure": "held-out prompts, after GRPO (4 samples each)", "mean reward": tuned["mean_reward"]}]
    columns = ["measure", "mean reward"]
    print_table("GRPO: the story mentions the asked-for word", rows, columns)
    meta = {"machine": machine(), **vars(args), "train_seconds": result.train_info["train_seconds"],
            "steps": result.train_info["steps"], "reward_curve": rewards}
    save("grpo_reward", rows, meta)
    (ROOT / "docs" / "bench" / "grpo_reward.md").write_text(
        f"# GRPO with a programmatic reward (TinyStories-656K)\n\n`python bench/grpo_reward.py --steps {args.steps} "
        f"--lr {args.lr} --generations {args.generations} --batch-size {args.batch_size}` on {meta['machine']}; "
        f"{result.train_info['steps']} steps in {result.train_info['train_seconds']:.0f} s. Reward: "
        "`tuneforge.tasks.reward_functions:mentions_word` (1 when the reply contains the prompt's word).\n\n"
        + markdown_table(rows, columns) + "\n")


if __name__ == "__main__":
    main()
