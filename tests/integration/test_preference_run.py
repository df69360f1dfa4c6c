"""Preference optimisation (DPO, IPO, KTO, ORPO) on a tiny causal LM: runs through the shared pipeline and
improves its own objective; transcripts in Anthropic HH style are split into prompt and answers, and OpenAI's DPO
lines (input.messages, preferred_output, non_preferred_output) read as pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import base_config, write_jsonl, write_yaml

GOOD = {"refund": "Your refund is on its way.", "track": "Your parcel arrives tomorrow."}


def _pairs(n: int = 48) -> list[dict]:
    rows = []
    for i in range(n):
        intent = list(GOOD)[i % 2]
        prompt, chosen, rejected = f"{intent} order {i}", GOOD[intent], "no idea, go away."
        if i % 3 == 0:  # whole transcripts, as in HH-RLHF
            rows.append({"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {chosen}",
                         "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {rejected}"})
        elif i % 3 == 1:  # OpenAI's DPO fine-tuning lines, as uploaded to /v1/files
            rows.append({"input": {"messages": [{"role": "user", "content": prompt}]},
                         "preferred_output": [{"role": "assistant", "content": chosen}],
                         "non_preferred_output": [{"role": "assistant", "content": rejected}]})
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


@pytest.mark.parametrize("algorithm", ["dpo", "ipo", "kto", "orpo"])
def test_preference_algorithms_learn_the_preference(algorithm: str, tiny_causal: Path, tmp_path: Path,
                                                    cli) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs())
    cfg = base_config(tiny_causal, data, tmp_path / "runs", name=algorithm,
                      task={"name": "preference", "algorithm": algorithm, "beta": 0.1},
                      method={"name": "lora", "r": 8, "alpha": 16},
                      training={"epochs": 6, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}}, evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 96
    res = cli("train", write_yaml(tmp_path / "p.yaml", cfg), "--quiet")
    assert res.code == 0, res.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / algorithm / "metrics.json").read_text())
    assert metrics["primary_metric"] == "reward_accuracy"
    base, tuned = metrics["baselines"]["base_model"], metrics["test"]
    if algorithm == "orpo":  # reference-free reward (mean log-prob): the base model has its own preference
        assert tuned["reward_margin"] > base["reward_margin"] and tuned["reward_accuracy"] >= base["reward_accuracy"]
    else:
        assert base["reward_accuracy"] == 0.5 and base["reward_margin"] == 0.0  # untrained: all rewards zero
        assert tuned["reward_accuracy"] > 0.5 and tuned["reward_margin"] > 0
    history = json.loads((tmp_path / "runs" / algorithm / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0]


def test_transcripts_that_differ_early_are_rejected(tiny_causal: Path, tmp_path: Path, cli) -> None:
    rows = _pairs(6)
    rows[4] = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: DIFFERENT\n\nAssistant: c"}
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = base_config(tiny_causal, data, tmp_path / "runs", task={"name": "preference"})
    res = cli("train", write_yaml(tmp_path / "p.yaml", cfg))
    assert res.code == 2 and "pairs.jsonl:5" in res.err and "differ before their final answers" in res.err


def test_reward_model_ranks_held_out_pairs(tiny_causal: Path, tmp_path: Path, cli) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs())
    cfg = base_config(tiny_causal, data, tmp_path / "runs", name="rm", task={"name": "reward"},
                      method={"name": "lora", "r": 8, "alpha": 16},
                      training={"epochs": 6, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}}, evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 96
    res = cli("train", write_yaml(tmp_path / "rm.yaml", cfg), "--quiet")
    assert res.code == 0, res.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / "rm" / "metrics.json").read_text())
    assert metrics["test"]["pairwise_accuracy"] >= 0.9  # the good answer is always the same kind of text
    assert metrics["test"]["mean_margin"] > 0
    res = cli("predict", tmp_path / "runs" / "rm", "refund order 3")
    assert res.code == 0 and isinstance(json.loads(res.out)["reward"], float)
