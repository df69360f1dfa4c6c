"""Online RL (GRPO) on a tiny causal LM: the reward is a user function named by import path, or a reward run; the
policy's mean reward on held-out prompts rises above the base model's."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import assert_user_error, base_config, write_jsonl, write_yaml

REWARDS = '''
def vowel_share(prompts, completions, **columns):
    """Share of letters that are vowels: dense enough for a random tiny model to climb within a few steps."""
    out = []
    for text in completions:
        letters = [c for c in text.lower() if c.isalpha()]
        out.append(sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0)
    return out

def wrong_length(prompts, completions, **columns):
    return [1.0]
'''


@pytest.fixture()
def reward_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "tf_test_rewards.py").write_text(textwrap.dedent(REWARDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tf_test_rewards"


def _prompts(n: int = 48) -> list[dict]:
    topics = ["a cat", "the sea", "a red ball", "my friend", "the moon", "a big tree"]
    return [{"prompt": f"Tell me about {topics[i % len(topics)]} ({i})", "word": topics[i % len(topics)].split()[-1]}
            for i in range(n)]


def _config(tiny_causal: Path, data: Path, out: Path, reward: str, **training: object) -> dict:
    cfg = base_config(tiny_causal, data, out, name="grpo",
                      task={"name": "rlhf", "reward": reward, "num_generations": 4, "max_new_tokens": 12,
                            "eval_prompts": 12, "eval_samples": 4},
                      method={"name": "full"},
                      training={"epochs": 1, "max_steps": 12, "learning_rate": 1e-2, "batch_size": 8,
                                "early_stopping": {"patience": None}, **training},
                      evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 64
    return cfg


def test_grpo_raises_mean_reward(tiny_causal: Path, tmp_path: Path, reward_module: str, cli) -> None:
    data = write_jsonl(tmp_path / "prompts.jsonl", _prompts())
    cfg = _config(tiny_causal, data, tmp_path / "runs", f"{reward_module}:vowel_share")
    res = cli("train", write_yaml(tmp_path / "g.yaml", cfg), "--quiet")
    assert res.code == 0, res.err[-3000:]
    run = tmp_path / "runs" / "grpo"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["primary_metric"] == "mean_reward"
    base, tuned = metrics["baselines"]["base_model"]["mean_reward"], metrics["test"]["mean_reward"]
    assert tuned > base + 0.05, (base, tuned)
    rewards = [h["reward"] for h in json.loads((run / "history.json").read_text()) if "reward" in h]
    assert len(rewards) >= 2 and rewards[-1] > rewards[0]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and "reward" in samples[0] and "base_model" in samples[0]


def test_grpo_with_a_reward_run(tiny_causal: Path, tmp_path: Path, cli) -> None:
    """A `reward` run drives GRPO: its model scores each sampled reply (a few steps; plumbing, not learning)."""
    pairs = [{"prompt": f"q {i}", "chosen": "a kind answer", "rejected": "zzz"} for i in range(24)]
    rm_cfg = base_config(tiny_causal, write_jsonl(tmp_path / "pairs.jsonl", pairs), tmp_path / "runs", name="rm",
                         task={"name": "reward"}, method={"name": "lora", "r": 4, "alpha": 8},
                         training={"epochs": 1, "batch_size": 8})
    rm_cfg["data"]["max_length"] = 64
    assert cli("train", write_yaml(tmp_path / "rm.yaml", rm_cfg), "--quiet").code == 0
    data = write_jsonl(tmp_path / "prompts.jsonl", _prompts(24))
    cfg = _config(tiny_causal, data, tmp_path / "runs", str(tmp_path / "runs" / "rm"), max_steps=2)
    cfg["task"]["eval_prompts"] = 3
    res = cli("train", write_yaml(tmp_path / "g.yaml", cfg), "--quiet")
    assert res.code == 0, res.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / "grpo" / "metrics.json").read_text())
    test = metrics["test"]
    assert test["replies"] > 0 and test["replies"] % 4 == 0 and test["reward_std"] > 0  # real, varying scores


@pytest.mark.parametrize(("reward", "training", "needles"), [
    ("tf_test_rewards:nope", {}, ["has no function 'nope'", "task.reward"]),
    ("no_such_module_xyz:f", {}, ["cannot import 'no_such_module_xyz'"]),
    ("just-a-word", {}, ["neither a run folder nor 'module:function'"]),
    ("tf_test_rewards:vowel_share", {"batch_size": 6}, ["not a multiple of num_generations (4)",
                                                         "training.batch_size"]),
])
def test_bad_rlhf_configs_fail_before_loading(tiny_causal: Path, tmp_path: Path, reward_module: str, cli,
                                              reward: str, training: dict, needles: list[str]) -> None:
    data = write_jsonl(tmp_path / "prompts.jsonl", _prompts(12))
    cfg = _config(tiny_causal, data, tmp_path / "runs", reward, **training)
    assert_user_error(cli("train", write_yaml(tmp_path / "g.yaml", cfg)), *needles)


def test_reward_function_returning_wrong_length_is_a_clear_error(reward_module: str) -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.tasks.reward_functions import load_reward, mentions_word

    reward = load_reward(f"{reward_module}:wrong_length", {}, 64)
    with pytest.raises(ConfigError, match="expected 2 numbers"):
        reward(prompts=["a", "b"], completions=["x", "y"], trainer_state=None)
    wrapped = load_reward("tuneforge.tasks.reward_functions:mentions_word", {"word": "Cat"}, 64)
    assert wrapped(prompts=[[{"role": "user", "content": "p"}]] * 2,
                   completions=[[{"role": "assistant", "content": "a cat!"}], "a dog"]) == [1.0, 0.0]
    assert mentions_word(["p", "p"], ["the moon", "sun"], word=["moon", "moon"]) == [1.0, 0.0]


def test_bad_prompt_records_name_file_and_line(tiny_causal: Path, tmp_path: Path, reward_module: str, cli) -> None:
    rows = _prompts(12)
    rows[6] = {"word": "cat"}  # no prompt
    rows[9] = {"prompt": "hi", "word": {"nested": 1}}  # extra columns must be plain values
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    cfg = _config(tiny_causal, data, tmp_path / "runs", f"{reward_module}:vowel_share")
    assert_user_error(cli("train", write_yaml(tmp_path / "g.yaml", cfg)), "prompts.jsonl:7",
                      "missing or empty 'prompt'")
    rows[6] = {"prompt": "fine", "word": "cat"}
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    assert_user_error(cli("train", write_yaml(tmp_path / "g.yaml", cfg)), "prompts.jsonl:10", "column 'word'")
