"""Forgetting mitigations: base-model reference logits (PEFT adapters switched off), KL, LR groups."""

from __future__ import annotations

from pathlib import Path

import torch

from tuneforge.training.regularizers import BaseModelReference, kl_to_base, parameter_groups


def _lora_model(path: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    return model


def test_peft_reference_is_the_base_model_without_a_copy(tiny_causal: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = _lora_model(tiny_causal)
    ids = torch.tensor([[5, 17, 33, 2]])
    reference = BaseModelReference(model)
    assert reference.copy is None
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_causal)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reference.logits(model, {"input_ids": ids}), plain(input_ids=ids).logits)
        assert not torch.allclose(model(input_ids=ids).logits, plain(input_ids=ids).logits)  # adapters are on again


def test_kl_is_zero_for_identical_and_positive_otherwise() -> None:
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 1, 2, 3, 4], [-100, -100, 2, -100, 4]])
    assert kl_to_base(logits, logits, labels).item() == 0.0
    assert kl_to_base(logits, torch.randn(2, 5, 11), labels).item() > 0.0


def test_parameter_groups_scale_only_the_backbone(tiny_causal: Path) -> None:
    model = _lora_model(tiny_causal)
    for p in model.parameters():
        p.requires_grad = True  # as in full fine-tuning plus adapters
    groups = parameter_groups(model, 0.01, 0.1, 1e-3)
    by_lr: dict[float, int] = {}
    for g in groups:
        by_lr[g["lr"]] = by_lr.get(g["lr"], 0) + sum(p.numel() for p in g["params"])
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert by_lr[1e-3] == lora and by_lr[1e-3 * 0.1] == sum(p.numel() for p in model.parameters()) - lora
