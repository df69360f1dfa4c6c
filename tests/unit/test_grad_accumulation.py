"""Gradient accumulation changes nothing but memory: batch 8 x 1 step and batch 4 x 2 accumulation steps over the
same examples in the same order give the same logged losses, gradient norms and weights, for every task's trainer.

The order is fixed (sequential sampling: the length-grouped sampler cuts batches by batch size, so it would feed the
two runs different examples), dropout is off, and the optimiser is plain SGD without clipping so weights are a linear
function of the gradients (Adam would hide a constant gradient scale, the very bug this guards against).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import base_config, make_intent_rows, write_jsonl

STEPS = 3
EXAMPLES = 8 * STEPS
ANSWERS = {"refund": "Your refund is on its way, sorry for the wait.", "track": "It arrives tomorrow.",
           "cancel": "Cancelled."}


def _chat_rows(n: int = 120) -> list[dict[str, str]]:
    rng = random.Random(0)
    intents = list(ANSWERS)
    # Prompts and answers of varied lengths: the two micro-batches hold different numbers of trained tokens.
    return [{"prompt": f"{intents[i % 3]} order {i}" + " please" * rng.randint(0, 6),
             "completion": ANSWERS[intents[i % 3]] + " Thanks!" * rng.randint(0, 3)} for i in range(n)]


def _pair_rows(n: int = 48) -> list[dict[str, str]]:
    rng = random.Random(1)
    return [{"prompt": f"{list(ANSWERS)[i % 3]} order {i}" + " now" * rng.randint(0, 4),
             "chosen": ANSWERS[list(ANSWERS)[i % 3]], "rejected": "no idea" + ", go away" * rng.randint(0, 3)}
            for i in range(n)]


def _no_dropout(model: Any) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _train(cfg_dict: dict[str, Any], batch: int, accumulation: int) -> tuple[list[float], list[float], dict]:
    """Train STEPS optimiser steps through tuneforge's own trainer construction; (losses, grad norms, how far each
    weight moved)."""
    from transformers import set_seed

    from tuneforge.config import parse_config
    from tuneforge.data.prepare import prepare_data
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS
    from tuneforge.training.trainer import build_trainer

    raw = {**cfg_dict, "training": {**cfg_dict["training"], "batch_size": batch,
                                    "gradient_accumulation_steps": accumulation}}
    cfg = parse_config(raw)
    set_seed(cfg.training.seed)
    model_path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(model_path)
    task = TASKS.get(cfg.task.name)(cfg.task)
    task.check_config(cfg)
    task.prepare_tokenizer(tokenizer)
    data = prepare_data(cfg, task, tokenizer)
    torch.manual_seed(0)  # the same initial head in both runs
    model = task.build_model(model_path, data.labels, pad_token_id=tokenizer.pad_token_id)
    _no_dropout(model)
    task.before_training(model, tokenizer, data.splits, cfg.training.seed, Path(cfg.output_dir))
    max_len = cfg.data.max_length
    train_ds = task.encode(data.splits["train"], tokenizer, data.labels, max_len)
    assert len(train_ds) >= EXAMPLES, len(train_ds)
    train_ds = train_ds.select(range(EXAMPLES))
    val_ds = task.encode(data.splits["validation"], tokenizer, data.labels, max_len)
    spec = task.trainer_spec(cfg)
    spec.args_extra.update(optim="sgd", max_grad_norm=0.0, train_sampling_strategy="sequential", logging_steps=1,
                           save_strategy="no", eval_strategy="no", load_best_model_at_end=False)
    weights = task.loss_weights(data.splits["train"], data.labels) if cfg.training.class_weights else None
    trainer, _, stop = build_trainer(cfg, model, tokenizer, train_ds, val_ds, task.collator(tokenizer),
                                     task.compute_metrics(data.labels), "loss", Path(cfg.output_dir) / "ckpt",
                                     None, quiet=True, class_weights=weights, loss_only=task.loss_only_eval,
                                     trainer_options=task.trainer_options(), spec=spec)
    # Library trainers may drop over-long examples: a short last window would be a different comparison.
    assert len(trainer.train_dataset) == EXAMPLES, len(trainer.train_dataset)
    before = {k: v.detach().float().clone() for k, v in trainer.model.state_dict().items()}
    try:
        trainer.train()
    finally:
        stop.restore_handlers()
    logs = [h for h in trainer.state.log_history if "loss" in h and "grad_norm" in h]
    assert trainer.state.global_step == STEPS and len(logs) == STEPS
    moved = {k: v.detach().float() - before[k] for k, v in trainer.model.state_dict().items()}
    return [h["loss"] for h in logs], [h["grad_norm"] for h in logs], moved


def _assert_equivalent(cfg_dict: dict[str, Any]) -> None:
    losses_a, norms_a, moved_a = _train(cfg_dict, batch=8, accumulation=1)
    losses_b, norms_b, moved_b = _train(cfg_dict, batch=4, accumulation=2)
    # abs: GRPO's on-policy loss is about zero (advantages average out), only float noise is left of it
    assert losses_b == pytest.approx(losses_a, rel=1e-4, abs=1e-6), "logged losses differ"
    assert norms_b == pytest.approx(norms_a, rel=1e-3), "gradient norms differ"
    assert sum(float(d.abs().sum()) for d in moved_a.values()) > 0  # training moved the weights at all
    for name, delta in moved_a.items():
        torch.testing.assert_close(moved_b[name], delta, rtol=1e-3, atol=1e-7,
                                   msg=lambda m, name=name: f"updates of {name} differ: {m}")


def _config(model: Path, rows: list[dict[str, Any]], tmp_path: Path, task: dict[str, Any],
            **training: Any) -> dict[str, Any]:
    cfg = base_config(model, write_jsonl(tmp_path / "data.jsonl", rows), tmp_path / "runs", task=task,
                      method={"name": "full"},
                      training={"epochs": 1, "max_steps": STEPS, "learning_rate": 0.05, "scheduler": "constant",
                                "warmup_ratio": 0.0, "seed": 3, "threads": 1, "group_by_length": False,
                                "early_stopping": {"patience": None}, **training})
    cfg["data"]["max_length"] = 128
    return cfg


SFT = {"name": "sft", "eval_generations": 0, "forgetting": {"enabled": False}}


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_sft_accumulation_matches_one_big_batch(packing: bool, tiny_causal: Path, tmp_path: Path) -> None:
    _assert_equivalent(_config(tiny_causal, _chat_rows(), tmp_path, {**SFT, "packing": packing}))


def test_sft_with_kl_to_base_accumulation_matches(tiny_causal: Path, tmp_path: Path) -> None:
    task = {**SFT, "packing": False, "forgetting": {"enabled": False, "kl_to_base": 0.5}}
    _assert_equivalent(_config(tiny_causal, _chat_rows(), tmp_path, task))


def test_distillation_accumulation_matches(tiny_student: Path, tiny_causal: Path, tmp_path: Path) -> None:
    task = {**SFT, "name": "distillation", "teacher": str(tiny_causal), "temperature": 2.0, "alpha": 0.5,
            "packing": False}
    _assert_equivalent(_config(tiny_student, _chat_rows(), tmp_path, task))


@pytest.mark.parametrize("class_weights", [False, True], ids=["plain", "class-weighted"])
def test_classification_accumulation_matches(class_weights: bool, tiny_bert: Path, tmp_path: Path) -> None:
    rows = make_intent_rows(20)
    rows = [r for r in rows if r["label"] != "cancel" or random.Random(r["text"]).random() < 0.4]  # imbalanced
    _assert_equivalent(_config(tiny_bert, rows, tmp_path, {"name": "classification"}, class_weights=class_weights))


def test_dpo_accumulation_matches(tiny_causal: Path, tmp_path: Path) -> None:
    _assert_equivalent(_config(tiny_causal, _pair_rows(), tmp_path, {"name": "preference", "algorithm": "dpo"}))


def test_reward_accumulation_matches(tiny_causal: Path, tmp_path: Path) -> None:
    _assert_equivalent(_config(tiny_causal, _pair_rows(), tmp_path, {"name": "reward"}))


def test_grpo_accumulation_matches(tiny_causal: Path, tmp_path: Path) -> None:
    """GRPO generates once per optimiser step for the whole accumulated batch (steps_per_generation defaults to the
    accumulation steps), so both runs sample the same 8 replies; its default loss (dapo) divides by the generation
    batch's token count and TRL declares it already scaled, which tuneforge keeps."""
    rows = [{"prompt": f"{list(ANSWERS)[i % 3]} order {i}"} for i in range(40)]
    # A reward proportional to the reply's length: varied, so the advantages (and gradients) are not all zero.
    task = {"name": "rlhf", "reward": "tuneforge.tasks.reward_functions:length_in_range",
            "reward_kwargs": {"low": 1000}, "num_generations": 4, "max_new_tokens": 8, "beta": 0.1,
            "eval_prompts": 1, "eval_samples": 1}
    _assert_equivalent(_config(tiny_causal, rows, tmp_path, task, learning_rate=0.002))
