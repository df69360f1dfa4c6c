"""An SFT run on a tiny causal LM: learns the answers, saves its chat template, generates, chats, previews masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def sft_run(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("sft")
    data = write_jsonl(tmp / "chat.jsonl", _chat_rows())
    cfg = base_config(tiny_causal, data, tmp / "runs", name="sft", task={"name": "sft", "max_new_tokens": 12},
                      training={"epochs": 30, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}},
                      evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 128
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / "sft", write_yaml(tmp / "sft.yaml", cfg)


def test_sft_learns_answers_and_keeps_its_template(sft_run: tuple[Path, Path]) -> None:
    from transformers import AutoTokenizer

    from tuneforge.tasks.chat_templates import BUILTIN

    run, _ = sft_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["primary_metric"] == "loss"
    assert metrics["test"]["loss"] < 0.5 * metrics["baselines"]["base_model"]["loss"]  # held-out answer loss falls
    assert metrics["comparison"][-1]["gain"] > 0  # lower loss counts as an improvement
    assert metrics["test"]["rouge_l"] > metrics["baselines"]["base_model"]["rouge_l"]
    assert 0.0 <= metrics["test"]["exact_match"] <= 1.0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and {"prompt", "reference", "generated", "base_model"} <= set(samples[0])
    assert "## Sample generations" in (run / "report.md").read_text()
    assert AutoTokenizer.from_pretrained(str(run / "model")).chat_template == BUILTIN["chatml"]
    forgetting = metrics["train"]["forgetting"]
    assert forgetting["reference_loss_before"] == pytest.approx(metrics["baselines"]["base_model"]["reference_loss"])
    assert forgetting["reference_loss_after"] == metrics["test"]["reference_loss"]
    assert len((run / "data" / "reference.jsonl").read_text().splitlines()) == 32
    assert "## Forgetting" in (run / "report.md").read_text()


def test_predict_and_generate_stop_at_end_of_turn(sft_run: tuple[Path, Path], cli) -> None:
    run, _ = sft_run
    res = cli("predict", run, "refund order 7")
    assert res.code == 0, res.err
    reply = json.loads(res.out)["reply"]
    assert reply.startswith("Your") and "<|im" not in reply  # the saved template's end-of-turn marker stops it
    res = cli("generate", run, "--prompt", "refund order 7", "--max-new-tokens", "12")
    assert res.code == 0 and res.out.strip() == reply  # same template, same greedy decoding


def test_chat_streams_and_keeps_history(sft_run: tuple[Path, Path]) -> None:
    run, _ = sft_run
    done = subprocess.run([sys.executable, "-m", "tuneforge.cli.main", "chat", str(run), "--max-new-tokens", "12"],
                          input="refund order 3\n/reset\ncancel order 4\n/exit\n", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    replies = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(replies) == 2 and all(r.startswith("Your") for r in replies)


def test_generate_on_a_folder_that_is_no_run(tmp_path: Path, cli) -> None:
    (tmp_path / "config.yaml").write_text("x: 1\n")
    res = cli("generate", tmp_path, "--prompt", "hi")
    assert res.code == 2 and "Traceback" not in res.err


def test_preview_masks_highlights_only_answers(sft_run: tuple[Path, Path], cli) -> None:
    _, config = sft_run
    res = cli("data", "preview", config, "--masks", "--n", "2")
    assert res.code == 0, res.err
    assert "tokens trained" in res.out and "chat.jsonl:" in res.out  # the prepared split, in file order


def test_bad_chat_data_names_file_and_line(tiny_causal: Path, tmp_path: Path, cli) -> None:
    rows = _chat_rows(6)
    rows[3] = {"messages": [{"role": "user", "content": "only a question"}]}
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    res = cli("train", write_yaml(tmp_path / "c.yaml", base_config(tiny_causal, data, tmp_path / "runs",
                                                                   task={"name": "sft"})))
    assert res.code == 2 and "chat.jsonl:4" in res.err and "no assistant turn" in res.err
    assert "Traceback" not in res.err


def _forgetting_change(tiny_causal: Path, tmp: Path, name: str, **mitigation: float) -> float:
    import tuneforge
    from tuneforge.config import parse_config

    data = write_jsonl(tmp / "chat.jsonl", _chat_rows(60))
    cfg = base_config(tiny_causal, data, tmp / "runs", name=name,
                      task={"name": "sft", "eval_generations": 0,
                            "forgetting": {"samples": 16, "sample_tokens": 32, **mitigation}},
                      training={"epochs": 10, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}}, evaluation={"baselines": []})
    return tuneforge.train(parse_config(cfg), quiet=True).train_info["forgetting"]["change"]


@pytest.fixture(scope="module")
def unmitigated(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    change = _forgetting_change(tiny_causal, tmp_path_factory.mktemp("plain"), "plain")
    assert change > 0  # fine-tuning on narrow chat data raises the loss on general text
    return change


@pytest.mark.parametrize("mitigation", [{"replay_ratio": 0.5}, {"kl_to_base": 1.0}, {"backbone_lr_scale": 0.1}],
                         ids=["replay", "kl-to-base", "lower-backbone-lr"])
def test_each_mitigation_reduces_forgetting(mitigation: dict, unmitigated: float, tiny_causal: Path,
                                            tmp_path: Path) -> None:
    assert _forgetting_change(tiny_causal, tmp_path, "guarded", **mitigation) < unmitigated
    if "replay_ratio" in mitigation:  # the replayed texts are never the measured ones
        data = tmp_path / "runs" / "guarded" / "data"
        measured = {json.loads(line)["text"] for line in (data / "reference.jsonl").read_text().splitlines()}
        replayed = {json.loads(line)["text"] for line in (data / "replay.jsonl").read_text().splitlines()}
        assert measured and replayed and not measured & replayed
