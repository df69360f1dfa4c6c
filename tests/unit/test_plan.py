"""`tuneforge plan`: impossible configs are rejected with the fix, estimates move the right way, the 13B/A100 paper
estimate lands near the published ~5 h, and a dry run really measures steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, assert_user_error, base_config, make_config, make_intent_rows, write_jsonl, write_yaml
from tuneforge.errors import ConfigError
from tuneforge.estimate import PlanResult

PLAN_13B = ROOT / "configs" / "plan" / "lora-13b.yaml"


@pytest.fixture()
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the shipped planning config uses paths relative to the repository root
    return ROOT


def _plan(config: Path | str, **kwargs: Any) -> PlanResult:
    from tuneforge.estimate import plan

    return plan(config, **kwargs)


def _sft_config(tmp_path: Path, model: Path, **extra: Any) -> Path:
    rows = [{"prompt": f"question {i}: what is {i} plus {i}?", "completion": f"it is {2 * i}"} for i in range(60)]
    train = write_jsonl(tmp_path / "sft.jsonl", rows)
    return make_config(tmp_path, model, train, task={"name": "sft"}, data={"train": str(train), "max_length": 48},
                       **extra)


# ---- impossible configs ---------------------------------------------------------------------------------------


def test_qlora_on_a_cpu_target_is_rejected_before_anything_loads(tmp_path: Path, tiny_causal: Path) -> None:
    cfg = _sft_config(tmp_path, tiny_causal, method={"name": "qlora"})
    with pytest.raises(ConfigError) as err:
        _plan(cfg, hardware="cpu")
    assert err.value.key == "method.name"
    assert "qlora needs a CUDA GPU" in str(err.value) and "use lora" in str(err.value)
    # The same config is a fine plan for a GPU profile: the rejection is about the target, not the config.
    result = _plan(cfg, hardware="a100-80gb")
    assert result.fits and result.model.trainable_params < result.model.total_params


def test_batch_that_cannot_fit_names_a_batch_that_does(at_root: Path) -> None:
    too_big = ["training.batch_size=32", "training.gradient_accumulation_steps=4"]
    with pytest.raises(ConfigError) as err:
        _plan(PLAN_13B, hardware="a100-80gb", overrides=too_big)
    message, plan = str(err.value), err.value.plan  # type: ignore[attr-defined]
    assert err.value.key == "training.batch_size" and "more than the a100-80gb" in message
    assert f"training.batch_size: {plan.proposed_batch}" in message
    assert f"gradient_accumulation_steps: {plan.proposed_accum}" in message
    assert plan.proposed_batch * plan.proposed_accum == 32 * 4  # the effective batch is kept
    # The batch it names really fits (planned again with the fix applied, no error).
    fixed = _plan(PLAN_13B, hardware="a100-80gb", overrides=[f"training.batch_size={plan.proposed_batch}",
                                                               f"training.gradient_accumulation_steps="
                                                               f"{plan.proposed_accum}"])
    assert fixed.fits and fixed.peak_bytes <= fixed.budget_bytes


def test_when_not_even_one_sequence_fits_the_fix_is_qlora_or_bigger_hardware(at_root: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _plan(PLAN_13B, hardware="rtx4090")
    message = str(err.value)
    assert "even batch 1 does not fit" in message and "qlora" in message and "a100-80gb" in message
    assert "rtx4090" not in message.split("Fix:")[1]  # never suggests the hardware that failed
    qlora = _plan(PLAN_13B, hardware="rtx4090", overrides=["method.name=qlora", "training.batch_size=1",
                                                           "training.gradient_checkpointing=true"])
    assert qlora.fits  # and the suggestion is real: 4-bit 13B weights leave room on 24 GB


def test_unknown_hardware_lists_the_valid_names(tmp_path: Path, tiny_bert: Path, intent_file: Path) -> None:
    from tuneforge.estimate import hardware_names

    with pytest.raises(ConfigError) as err:
        _plan(make_config(tmp_path, tiny_bert, intent_file), hardware="a100-800gb")
    assert "unknown hardware 'a100-800gb'" in str(err.value)
    assert all(name in str(err.value) for name in hardware_names())


def test_cli_exit_code_2_on_impossible_configs(cli, tmp_path: Path, tiny_causal: Path, at_root: Path) -> None:
    res = cli("plan", str(_sft_config(tmp_path, tiny_causal, method={"name": "qlora"})), "--hardware", "cpu")
    assert_user_error(res, "qlora needs a CUDA GPU", fix="use lora")
    res = cli("plan", str(PLAN_13B), "--hardware", "a100-80gb", "--set", "training.batch_size=64")
    assert_user_error(res, "training.batch_size", "more than the a100-80gb", fix="set training.batch_size: ")
    assert "peak memory per device" in res.out  # the numbers behind the refusal are shown first
    assert_user_error(cli("plan", str(PLAN_13B), "--hardware", "tpu-v5"), "unknown hardware", fix="a100-80gb")


# ---- estimates behave ---------------------------------------------------------------------------------------


def test_memory_estimates_move_the_right_way(at_root: Path) -> None:
    base = ["training.batch_size=2", "training.gradient_accumulation_steps=64"]
    lora = _plan(PLAN_13B, hardware="h200", overrides=base, strict=False)
    # Checkpointing keeps one hidden state per layer instead of every intermediate.
    assert lora.memory_other.checkpointing and lora.memory_other.activations < lora.memory.activations / 4
    full = _plan(PLAN_13B, hardware="h200", overrides=[*base, "method=full"], strict=False)
    assert full.model.trainable_params > 100 * lora.model.trainable_params
    assert full.memory.total > lora.memory.total + 2 * lora.memory.weights  # gradients + AdamW states of 13B
    bigger = _plan(PLAN_13B, hardware="h200", overrides=["training.batch_size=4"], strict=False)
    assert bigger.memory.activations > 1.9 * lora.memory.activations and bigger.memory.weights == lora.memory.weights
    qlora = _plan(PLAN_13B, hardware="h200", overrides=[*base, "method.name=qlora"], strict=False)
    assert qlora.memory.weights < 0.35 * lora.memory.weights  # ~4.1 bits instead of 16 for the linear layers


def test_time_estimates_move_the_right_way(at_root: Path) -> None:
    one = _plan(PLAN_13B, hardware="a100-80gb")
    four = _plan(PLAN_13B, hardware="a100-80gb", devices=4)
    assert four.total_seconds < one.total_seconds / 3  # data parallel, below-linear scaling
    assert four.cost > one.cost  # but more device-hours
    assert one.time_other.seconds_per_epoch > one.time.seconds_per_epoch  # checkpointing recomputes the forward
    faster = _plan(PLAN_13B, hardware="h100-80gb")
    assert faster.total_seconds < one.total_seconds / 2
    full = _plan(PLAN_13B, hardware="h200", overrides=["method=full", "training.batch_size=1",
                                                       "training.gradient_accumulation_steps=128",
                                                       "training.gradient_checkpointing=true"], strict=False)
    lora = _plan(PLAN_13B, hardware="h200", overrides=["training.gradient_checkpointing=true"])
    # ~8N FLOPs per token for full + checkpointing against ~6N for a frozen base + checkpointing.
    assert 1.2 < full.time.flops_per_token / lora.time.flops_per_token < 1.45
    half = _plan(PLAN_13B, hardware="a100-80gb", examples=26001)
    assert half.total_seconds == pytest.approx(one.total_seconds / 2, rel=0.05)
    assert one.cost == pytest.approx(one.total_seconds / 3600 * one.hardware.price_per_hour)
    assert _plan(PLAN_13B, hardware="a100-80gb", price_per_hour=10.0).cost == pytest.approx(
        10.0 * one.total_seconds / 3600)


def test_13b_lora_on_one_a100_is_about_five_hours_on_paper(at_root: Path) -> None:
    result = _plan(PLAN_13B, hardware="a100-80gb")
    assert result.fits
    assert 12.5e9 < result.model.total_params < 13.5e9
    assert result.model.trainable_fraction < 0.005
    assert 3.0 < result.total_seconds / 3600 < 7.5, result.total_seconds / 3600  # published: about 5 h
    assert 50 * 2**30 < result.peak_bytes < 70 * 2**30
    # tuneforge's own default (packing) wastes no padding: the same job is faster.
    packed = _plan(PLAN_13B, hardware="a100-80gb", overrides=["task.packing=true", "training.group_by_length=true"])
    assert packed.total_seconds < 0.7 * result.total_seconds


def test_plan_from_config_json_alone_estimates_tokens_from_characters(tmp_path: Path, tiny_bert: Path,
                                                                      intent_file: Path) -> None:
    bare = tmp_path / "bare-model"
    bare.mkdir()
    shutil.copy(tiny_bert / "config.json", bare / "config.json")  # no weights, no tokenizer
    result = _plan(make_config(tmp_path, bare, intent_file), hardware="cpu")
    assert result.data.source.startswith("characters")
    assert any("no tokenizer" in note for note in result.notes)
    with_tokenizer = _plan(make_config(tmp_path, tiny_bert, intent_file, name="tok.yaml"), hardware="cpu")
    assert with_tokenizer.model.total_params == result.model.total_params  # the same model, counted on meta
    assert 0.5 < result.data.mean_len / with_tokenizer.data.mean_len < 2.0
    with pytest.raises(ConfigError, match="weights"):
        _plan(make_config(tmp_path, bare, intent_file), dry_run=True)


def test_dataset_statistics_file_stands_in_for_data(tmp_path: Path, tiny_causal: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"tuneforge_dataset_stats": {"examples": 1000, "token_lengths": [10, 20, 30]}}))
    cfg = base_config(tiny_causal, stats, tmp_path / "runs", task={"name": "sft", "packing": False},
                      data={"train": str(stats), "max_length": 25})
    result = _plan(write_yaml(tmp_path / "stats.yaml", cfg), hardware="cpu")
    assert result.data.rows == 1000 and result.data.max_len == 25  # truncated at max_length
    stats.write_text(json.dumps({"tuneforge_dataset_stats": {"examples": 1000, "token_lengths": []}}))
    with pytest.raises(ConfigError, match="token_lengths"):
        _plan(write_yaml(tmp_path / "stats.yaml", cfg), hardware="cpu")


# ---- dry run --------------------------------------------------------------------------------------------------


def test_dry_run_measures_real_steps_and_proposes_batch_and_accumulation(tmp_path: Path, tiny_bert: Path) -> None:
    train = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(40))
    cfg = write_yaml(tmp_path / "run.yaml", base_config(
        tiny_bert, train, tmp_path / "runs", training={"batch_size": 8, "gradient_accumulation_steps": 2,
                                                       "threads": 1}))
    result = _plan(cfg, dry_run=True, dry_run_steps=3)
    dry = result.dry_run
    assert dry is not None and [m.batch for m in dry.measurements] == [4, 8]
    for m in dry.measurements:
        assert m.peak_bytes > 0 and len(m.samples) == 3 and all(s > 0 for _, s in m.samples)
        assert m.step_tokens[0] == m.step_tokens[-1] == max(m.step_tokens)  # longest batch first and last
    assert dry.memory.at(8) > dry.memory.at(4) > 0 and dry.memory.per_sample > 0
    assert dry.time.seconds_per_epoch > 0 and dry.time.source == "dry run"
    assert result.epoch_seconds == dry.time.seconds_per_epoch  # the measurement replaces the analytic time
    assert dry.largest_batch >= 8 and result.fits
    assert result.proposed_batch * result.proposed_accum == 16  # keeps the effective batch
    assert result.proposed_batch == min(16, dry.largest_batch)
    assert not (tmp_path / "runs").exists()  # planning writes no run folder
