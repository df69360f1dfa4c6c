"""`training.refit: true`: after early stopping picks the step count, a second run from the same starting weights
trains on train + validation for exactly that many steps, and that model is the one saved and evaluated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import base_config, make_intent_rows, write_jsonl
from tuneforge.training.refit import chosen_steps, restore_trainable, snapshot_trainable


def _expected_seen(n_examples: int, batch: int, steps: int) -> int:
    """Examples batched in `steps` steps over a data set of n, restarting each epoch (the last batch is short)."""
    per_epoch = math.ceil(n_examples / batch)
    sizes = [batch] * (n_examples // batch) + ([n_examples % batch] if n_examples % batch else [])
    full_epochs, rest = divmod(steps, per_epoch)
    return full_epochs * n_examples + sum(sizes[:rest])


@pytest.fixture(scope="module")
def refit_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("refit")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(40))
    # Validation every 6 steps over up to 15 epochs: early stopping ends the run and restores the best step.
    cfg = base_config(tiny_bert, data, tmp / "runs", name="refit",
                      training={"epochs": 15, "eval_steps": 6, "learning_rate": 5e-3, "refit": True,
                                "early_stopping": {"patience": 3}})
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / "refit"


def test_refit_trains_on_train_and_validation_for_the_chosen_steps(refit_run: Path) -> None:
    info = json.loads((refit_run / "metrics.json").read_text())["train"]
    refit = info["refit"]
    n_train = len((refit_run / "data" / "train.jsonl").read_text().splitlines())
    n_val = len((refit_run / "data" / "validation.jsonl").read_text().splitlines())
    assert n_val > 0 and info["best_step"] is not None
    assert refit["chosen_steps"] == info["best_step"]  # the step early stopping restored, not where it stopped
    assert refit["steps"] == info["best_step"]
    assert refit["examples"] == n_train + n_val
    # The rows the refit stepped on: every step drew from the train + validation set.
    assert refit["examples_seen"] == _expected_seen(n_train + n_val, 16, info["best_step"])


def test_saved_model_is_the_refit_one(refit_run: Path) -> None:
    """The saved weights differ from the first run's best checkpoint (it would be saved without the refit)."""
    from safetensors.torch import load_file

    info = json.loads((refit_run / "metrics.json").read_text())["train"]
    best = refit_run / "checkpoints" / f"checkpoint-{info['best_step']}" / "model.safetensors"
    saved = load_file(str(refit_run / "model" / "model.safetensors"))
    first = load_file(str(best))
    shared = [k for k in saved if k in first and saved[k].shape == first[k].shape and saved[k].is_floating_point()]
    assert shared and any(not torch.equal(saved[k], first[k]) for k in shared)


def test_refit_off_by_default_leaves_no_record(tiny_bert: Path, tmp_path: Path) -> None:
    import tuneforge
    from tuneforge.config import parse_config

    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(10))
    result = tuneforge.train(parse_config(base_config(tiny_bert, data, tmp_path / "runs", training={"epochs": 1})),
                             quiet=True)
    assert result.train_info["refit"] is None


def test_snapshot_restores_only_trainable_parameters() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    snap = snapshot_trainable(model)
    assert "0.weight" not in snap and set(snap) == {"0.bias", "1.weight", "1.bias"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    restore_trainable(model, snap)
    after = model.state_dict()
    assert torch.equal(after["1.weight"], before["1.weight"]) and torch.equal(after["0.bias"], before["0.bias"])
    assert torch.equal(after["0.weight"], before["0.weight"] + 1.0)  # frozen: not part of the refit's reset


def test_chosen_steps_prefers_the_best_checkpoint() -> None:
    class State:
        best_global_step, global_step = 12, 21

    assert chosen_steps(State()) == 12
    State.best_global_step = None
    assert chosen_steps(State()) == 21


def test_refit_with_lora_resets_the_adapter_and_trains_the_chosen_steps(tiny_bert: Path, tmp_path: Path) -> None:
    """PEFT restores the best checkpoint through its own adapter loading; the refit must still start from the
    initial adapter and train the chosen number of steps on train + validation."""
    import tuneforge
    from tuneforge.config import parse_config

    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(20))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", name="lora-refit", method={"name": "lora", "r": 4},
                      training={"epochs": 6, "eval_steps": 2, "learning_rate": 5e-3, "refit": True,
                                "early_stopping": {"patience": 2}})
    result = tuneforge.train(parse_config(cfg), quiet=True)
    info, run = result.train_info, tmp_path / "runs" / "lora-refit"
    n = sum(len((run / "data" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "validation"))
    assert info["refit"]["steps"] == info["best_step"] and info["refit"]["examples"] == n
    assert info["refit"]["examples_seen"] == _expected_seen(n, 16, info["best_step"])


def test_report_says_the_tested_model_is_the_refit(refit_run: Path) -> None:
    info = json.loads((refit_run / "metrics.json").read_text())["train"]
    report = (refit_run / "report.md").read_text()
    assert f"for the chosen {info['refit']['steps']} steps" in report
    assert f"({info['refit']['examples']:,} examples)" in report
