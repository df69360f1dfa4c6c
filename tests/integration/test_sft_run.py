"""An SFT run on a tiny causal LM through the CLI: learns the answers, saves its chat template, generates."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import base_config, write_jsonl, write_yaml

ANSWERS = {"refund": "Your refund is on its way.", "track": "Your parcel arrives tomorrow.",
           "cancel": "Your order is cancelled."}


def _chat_rows(n: int = 90) -> list[dict]:
    rows = []
    for i in range(n):
        intent = list(ANSWERS)[i % 3]
        if i % 2:
            rows.append({"prompt": f"{intent} order {i}", "completion": ANSWERS[intent]})
        else:
            rows.append({"messages": [{"role": "user", "content": f"hello {i}"},
                                      {"role": "assistant", "content": "Hi, how can I help?"},
                                      {"role": "user", "content": f"{intent} order {i}"},
                                      {"role": "assistant", "content": ANSWERS[intent]}]})
    return rows


def test_sft_learns_answers_and_keeps_its_template(tiny_causal: Path, tmp_path: Path, cli) -> None:
    from tuneforge.tasks.chat_templates import BUILTIN

    data = write_jsonl(tmp_path / "chat.jsonl", _chat_rows())
    cfg = base_config(tiny_causal, data, tmp_path / "runs", name="sft", task={"name": "sft", "max_new_tokens": 12},
                      training={"epochs": 30, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}},
                      evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 128
    res = cli("train", write_yaml(tmp_path / "sft.yaml", cfg), "--quiet")
    assert res.code == 0, res.err
    run = tmp_path / "runs" / "sft"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["primary_metric"] == "loss"
    assert metrics["test"]["loss"] < 0.5 * metrics["baselines"]["base_model"]["loss"]  # held-out answer loss falls
    assert metrics["comparison"][-1]["delta_points"] > 0  # lower loss counts as an improvement
    assert metrics["test"]["rouge_l"] > metrics["baselines"]["base_model"]["rouge_l"]
    assert 0.0 <= metrics["test"]["exact_match"] <= 1.0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and {"prompt", "reference", "generated", "base_model"} <= set(samples[0])
    assert "## Sample generations" in (run / "report.md").read_text()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(run / "model")).chat_template == BUILTIN["chatml"]
    res = cli("predict", run, "refund order 7")
    assert res.code == 0, res.err
    reply = json.loads(res.out)["reply"]
    assert reply.startswith("Your") and "<|im" not in reply  # the saved template's end-of-turn marker stops it


def test_bad_chat_data_names_file_and_line(tiny_causal: Path, tmp_path: Path, cli) -> None:
    rows = _chat_rows(6)
    rows[3] = {"messages": [{"role": "user", "content": "only a question"}]}
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    res = cli("train", write_yaml(tmp_path / "c.yaml", base_config(tiny_causal, data, tmp_path / "runs",
                                                                   task={"name": "sft"})))
    assert res.code == 2 and "chat.jsonl:4" in res.err and "no assistant turn" in res.err
    assert "Traceback" not in res.err
