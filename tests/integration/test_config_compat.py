"""Config combinations that would only fail mid-run are rejected before training starts (exit 2, key named)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import base_config, write_jsonl, write_yaml


@pytest.mark.parametrize(("extra", "key", "hint"), [
    ({"task": {"name": "token_classification"}, "method": {"name": "prompt_tuning"}}, "method.name",
     "virtual tokens"),
    ({"training": {"early_stopping": {"metric": "f1"}}}, "training.early_stopping.metric", "macro_f1"),
    ({"data": {"max_length": 4096}}, "data.max_length", "at most 128"),
    ({"method": {"name": "lora", "target_modules": ["no_such_module"]}}, "method", "target_modules"),
    ({"method": {"name": "adapter", "ffn_pattern": "(["}}, "method.attn_pattern", "regular expression"),
    ({"training": {"precision": "fp16", "device": "cpu"}}, "training.precision", "fp32"),
], ids=["prompt-tuning-with-ner", "metric-not-reported", "longer-than-positions", "lora-targets-nothing",
        "adapter-bad-regex", "fp16-on-cpu"])
def test_incompatible_settings_fail_before_training(extra: dict, key: str, hint: str, tiny_bert: Path,
                                                    tmp_path: Path, cli, ner_file: Path, intent_file: Path) -> None:
    data = ner_file if extra.get("task", {}).get("name") == "token_classification" else intent_file
    cfg = base_config(tiny_bert, data, tmp_path / "runs", **extra)
    if "data" in extra:
        cfg["data"] = {"train": str(data), **extra["data"]}
    res = cli("train", write_yaml(tmp_path / "c.yaml", cfg))
    assert res.code == 2, res.out + res.err
    assert key in res.err and hint in res.err and "Traceback" not in res.err
    assert not (tmp_path / "runs" / "t" / "checkpoints").exists()


def test_train_equal_to_test_is_caught(tiny_bert: Path, tmp_path: Path, cli, intent_file: Path) -> None:
    cfg = base_config(tiny_bert, intent_file, tmp_path / "runs")
    cfg["data"] = {"train": str(intent_file), "test": str(intent_file)}
    res = cli("train", write_yaml(tmp_path / "c.yaml", cfg))
    assert res.code == 2 and "every one also occurs in validation or test" in res.err


def test_single_label_data_is_rejected(tiny_bert: Path, tmp_path: Path, cli) -> None:
    data = write_jsonl(tmp_path / "one.jsonl", [{"text": f"text {i}", "label": "only"} for i in range(30)])
    res = cli("train", write_yaml(tmp_path / "c.yaml", base_config(tiny_bert, data, tmp_path / "runs")))
    assert res.code == 2 and "one.jsonl" in res.err and "at least two labels" in res.err


def test_gradient_accumulation_matches_a_larger_batch(tiny_bert: Path, intent_file: Path, tmp_path: Path) -> None:
    """batch 8 x 2 accumulation steps must train like batch 16 (same loss scale, same updates)."""
    import json

    import tuneforge
    from tuneforge.config import parse_config

    def run(name: str, **training: object) -> list[float]:
        cfg = base_config(tiny_bert, intent_file, tmp_path / "runs", name=name, training={
            "epochs": 1, "learning_rate": 1e-3, "group_by_length": False, **training})
        tuneforge.train(parse_config(cfg), quiet=True)
        history = json.loads((tmp_path / "runs" / name / "history.json").read_text())
        return [h["loss"] for h in history if "loss" in h]

    big = run("big", batch_size=16)
    accumulated = run("acc", batch_size=8, gradient_accumulation_steps=2)
    assert accumulated == pytest.approx(big, rel=0.05)  # without the fix the logged loss is 2x


def test_qlora_on_cpu_fails_before_loading(tiny_causal: Path, tmp_path: Path, cli, intent_file: Path) -> None:
    cfg = base_config(tiny_causal, intent_file, tmp_path / "runs", method={"name": "qlora"})
    res = cli("train", write_yaml(tmp_path / "c.yaml", cfg))
    assert res.code == 2 and "method.name" in res.err and "GPU" in res.err and "use lora" in res.err
    assert not (tmp_path / "runs" / "t").exists()  # nothing was prepared or written


def test_prefix_tuning_refuses_packing(tiny_causal: Path, tmp_path: Path, cli) -> None:
    data = write_jsonl(tmp_path / "c.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(20)])
    cfg = base_config(tiny_causal, data, tmp_path / "runs", task={"name": "sft"}, method={"name": "prefix_tuning"})
    res = cli("train", write_yaml(tmp_path / "c.yaml", cfg))
    assert res.code == 2 and "task.packing" in res.err
