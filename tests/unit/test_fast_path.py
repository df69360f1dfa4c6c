"""The GPU fast path: what it decides (and why it falls back) is checked here on CPU, as are the parts that run on
CPU: flex-attention over packed rows, fixed-width token buckets, and the memory rule for gradient checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneforge.config import parse_config
from tuneforge.data.packing import PackedCollator, pack
from tuneforge.errors import ConfigError
from tuneforge.methods import METHODS
from tuneforge.tasks import TASKS
from tuneforge.training import fast_path


def _plan(model: Path, cuda: bool, fast: str = "auto", method: str = "lora", **task: object) -> fast_path.FastPath:
    cfg = parse_config({"name": "t", "model": {"path": str(model)}, "data": {"train": "x.jsonl", "max_length": 256},
                        "task": {"name": "sft", **task}, "method": {"name": method},
                        "training": {"fast_path": fast}})
    return fast_path.decide(cfg, TASKS.get("sft")(cfg.task), METHODS.get(method)(cfg.method), str(model), cuda=cuda)


def test_fast_path_switches_on_for_a_supported_gpu_run(tiny_causal: Path) -> None:
    plan = _plan(tiny_causal, cuda=True)
    assert plan.enabled and plan.compile and plan.bucket == 256
    assert plan.attention in ("flash_attention_2", "flex_attention")
    assert plan.load_kwargs()["dtype"] is torch.bfloat16
    assert plan.summary().startswith("fast path on: attention=")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"cuda": False}, "no CUDA GPU"),
    ({"cuda": True, "fast": "off"}, "training.fast_path is off"),
    ({"cuda": True, "packing": False}, "task.packing is off"),
    ({"cuda": True, "method": "prompt_tuning"}, "adds virtual tokens"),
])
def test_fast_path_falls_back_with_one_reason(tiny_causal: Path, kwargs: dict, reason: str) -> None:
    plan = _plan(tiny_causal, **kwargs)
    assert not plan.enabled and reason in plan.summary() and plan.load_kwargs() == {}


def test_unsupported_architecture_falls_back_and_require_makes_it_an_error(tiny_gpt2: Path) -> None:
    assert "architecture 'gpt2'" in _plan(tiny_gpt2, cuda=True).reason
    with pytest.raises(ConfigError, match="fast path cannot run: architecture 'gpt2'"):
        _plan(tiny_gpt2, cuda=True, fast="require")


def test_bucketed_collator_gives_one_static_width() -> None:
    rows = pack([{"input_ids": [5] * n, "labels": [5] * n} for n in (7, 30, 12)], 32)
    batch = PackedCollator(0, pad_to=64)(rows)
    assert batch["input_ids"].shape == (len(rows), 64)
    assert (batch["labels"][:, 40:] == -100).all()


def test_checkpointing_is_chosen_by_memory() -> None:
    """Llama-3-8B shapes: ~5.9 MB of bf16 activations per token. 16k tokens do not fit in 80 GB; 4k tokens do."""
    from types import SimpleNamespace

    llama8b = SimpleNamespace(config=SimpleNamespace(hidden_size=4096, num_hidden_layers=32, intermediate_size=14336,
                                                     num_attention_heads=32))
    gib = 1024 ** 3
    assert fast_path.needs_checkpointing(llama8b, 16384, 80 * gib)
    assert not fast_path.needs_checkpointing(llama8b, 4096, 80 * gib)


def test_flex_attention_keeps_packed_examples_apart(tiny_causal: Path) -> None:
    """The fast path's attention on CPU: a packed row's logits equal each example's logits run alone."""
    from tuneforge.tasks.sft import SFT, SFTParams

    model = SFT(SFTParams()).build_model(str(tiny_causal), [], attn_implementation="flex_attention").eval()
    ids = [list(range(5, 25)), list(range(30, 42)), list(range(50, 80))]
    flat = [t for x in ids for t in x]
    batch = PackedCollator(0, pad_to=64)([{"input_ids": flat, "labels": flat,
                                           "position_ids": [i for x in ids for i in range(len(x))]}])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        offset = 0
        for x in ids:
            alone = model(input_ids=torch.tensor([x])).logits[0]
            torch.testing.assert_close(packed[offset:offset + len(x)], alone, rtol=1e-4, atol=1e-4)
            offset += len(x)


def test_decoder_layers_are_found_under_peft(tiny_causal: Path) -> None:
    from tuneforge.tasks.sft import SFT, SFTParams

    task = SFT(SFTParams())
    model = task.build_model(str(tiny_causal), [])
    wrapped = METHODS.get("lora")(METHODS.get("lora").Params(name="lora")).apply(model, task.head_info(model))
    assert len(fast_path.decoder_layers(wrapped)) == model.config.num_hidden_layers == 2
