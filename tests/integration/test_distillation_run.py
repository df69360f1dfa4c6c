"""Distillation: a smaller Qwen2 student learns a tuned Llama teacher's token distributions (same tokenizer); the
loss mixes soft (KL, temperature) and hard labels as configured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import assert_user_error, base_config, write_jsonl, write_yaml

ANSWERS = {"refund": "Your refund is on its way.", "track": "Your parcel arrives tomorrow."}


def _rows(n: int = 64) -> list[dict]:
    return [{"prompt": f"{list(ANSWERS)[i % 2]} order {i}", "completion": ANSWERS[list(ANSWERS)[i % 2]]}
            for i in range(n)]


@pytest.fixture(scope="module")
def teacher_run(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("teacher")
    cfg = base_config(tiny_causal, write_jsonl(tmp / "chat.jsonl", _rows()), tmp / "runs", name="teacher",
                      task={"name": "sft", "eval_generations": 0, "forgetting": {"enabled": False}},
                      training={"epochs": 15, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}})
    cfg["data"]["max_length"] = 64
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / "teacher"


def _student_config(tiny_student: Path, tmp_path: Path, teacher: Path | str, **task: object) -> dict:
    cfg = base_config(tiny_student, write_jsonl(tmp_path / "chat.jsonl", _rows()), tmp_path / "runs", name="student",
                      task={"name": "distillation", "teacher": str(teacher), "temperature": 2.0, "alpha": 0.7,
                            "eval_generations": 4, "max_new_tokens": 8, "forgetting": {"enabled": False}, **task},
                      training={"epochs": 8, "learning_rate": 1e-2, "batch_size": 8,
                                "early_stopping": {"patience": None}},
                      evaluation={"baselines": "auto"})
    cfg["data"]["max_length"] = 64
    return cfg


def test_student_moves_towards_the_teacher(tiny_student: Path, teacher_run: Path, tmp_path: Path, cli) -> None:
    res = cli("train", write_yaml(tmp_path / "d.yaml", _student_config(tiny_student, tmp_path, teacher_run)),
              "--quiet")
    assert res.code == 0, res.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / "student" / "metrics.json").read_text())
    base, tuned, teacher = (metrics["baselines"]["base_model"], metrics["test"], metrics["baselines"]["teacher"])
    assert tuned["teacher_kl"] < 0.5 * base["teacher_kl"]
    assert teacher["teacher_kl"] == 0.0 and tuned["loss"] < base["loss"]
    assert metrics["train"]["compression"] > 1.5  # the student is the smaller model
    history = json.loads((tmp_path / "runs" / "student" / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0]


def test_mixed_loss_matches_its_definition() -> None:
    from tuneforge.training.distillation import distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    mixed, soft, hard = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.25)
    mask = labels[:, 1:] != -100
    expected_hard = torch.nn.functional.cross_entropy(student[:, :-1][mask], labels[:, 1:][mask])
    torch.testing.assert_close(hard, expected_hard)
    torch.testing.assert_close(mixed, 0.25 * soft + 0.75 * hard)
    _, same, _ = distillation_loss(teacher, teacher, labels, 3.0, 1.0)
    assert abs(float(same)) < 1e-6 < float(soft)
    # T^2 scaling: the soft gradient does not vanish as the temperature grows
    grads = []
    for t in (1.0, 8.0):
        s = student.clone().requires_grad_(True)
        distillation_loss(s, teacher, labels, t, 1.0)[0].backward()
        grads.append(float(s.grad.norm()))
    assert grads[1] > 0.1 * grads[0]


def test_bad_teachers_fail_cleanly(tiny_student: Path, tiny_llama: Path, tmp_path: Path, cli) -> None:
    missing = _student_config(tiny_student, tmp_path, tmp_path / "nope")
    assert_user_error(cli("train", write_yaml(tmp_path / "a.yaml", missing)), "teacher folder", "task.teacher")
    other_vocab = _student_config(tiny_student, tmp_path, tiny_llama)  # a Llama with MiniLM's tokenizer
    assert_user_error(cli("train", write_yaml(tmp_path / "b.yaml", other_vocab)), "tokenizer differs")


def test_the_teacher_is_a_ceiling_not_the_baseline_to_beat() -> None:
    from tuneforge.evaluation.report import comparison_rows
    from tuneforge.tasks.base import EvalResult

    rows = comparison_rows("full", EvalResult({"loss": 1.0}), {"base_model": EvalResult({"loss": 3.0}),
                                                               "teacher": EvalResult({"loss": 0.2})},
                           "loss", "loss", ceilings=("teacher",))
    # measured against the untrained student, not the teacher; a loss difference in its own units, not x100
    assert rows[-1]["gain"] == 2.0
