"""Every method: trains only what it claims, saves only that (plus the head), and reloads to identical outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneforge.methods import METHODS, count_parameters
from tuneforge.methods.adapter import insert_adapters
from tuneforge.registry.artifacts import load_model, save_model
from tuneforge.tasks.classification import Classification, ClassificationParams
from tuneforge.tasks.token_classification import TokenClassification, TokenClassificationParams

LABELS = ["a", "b", "c"]
ALL = ["full", "freeze", "lora", "dora", "ia3", "prompt_tuning", "adapter"]
CAUSAL = ["full", "freeze", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "adapter"]
# Every method on Llama; the common ones on Qwen2 and GPT-2 too (GPT-2: fused Conv1D projections, learned positions).
CAUSAL_CASES = [(m, "tiny_causal") for m in CAUSAL] + [(m, arch) for arch in ("tiny_qwen2", "tiny_gpt2")
                                                       for m in ("full", "freeze", "lora", "ia3", "adapter")]


def _batch(tokenizer, labels: bool = True) -> dict:
    enc = tokenizer(["where is my order", "refund it now please", "cancel"], padding=True, return_tensors="pt")
    if labels:
        enc["labels"] = torch.tensor([0, 1, 2])
    return dict(enc)


def _train_steps(model, batch: dict, steps: int = 3) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()


def test_registry_has_every_method() -> None:
    assert set(ALL) | set(CAUSAL) | {"qlora"} <= set(METHODS.names())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("arch", ["tiny_bert", "tiny_llama"])
def test_method_trains_saves_and_reloads(name: str, arch: str, request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model_dir = request.getfixturevalue(arch)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    task = Classification(ClassificationParams())
    method = METHODS.get(name)(METHODS.get(name).Params(name=name))
    torch.manual_seed(0)
    model = task.build_model(str(model_dir), LABELS, pad_token_id=tokenizer.pad_token_id)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = method.apply(model, task.head_info(model))
    trainable, total = count_parameters(model)
    if name == "full":
        assert trainable == total
    else:
        assert 0 < trainable < 0.5 * total, f"{name}: {trainable} of {total}"
    batch = _batch(tokenizer)
    _train_steps(model, batch)
    model.eval()
    with torch.no_grad():
        expected = model(**_batch(tokenizer, labels=False)).logits

    save_model(tmp_path, task, method, model, tokenizer, LABELS, str(model_dir), 32)
    saved_bytes = sum(f.stat().st_size for f in tmp_path.glob("*.safetensors"))
    full_bytes = sum(v.numel() * v.element_size() for v in before.values())
    if name != "full":
        assert saved_bytes < 0.5 * full_bytes, f"{name} saved {saved_bytes} bytes of a {full_bytes}-byte model"
    loaded = load_model(tmp_path)
    with torch.no_grad():
        got = loaded.model(**_batch(tokenizer, labels=False)).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_frozen_weights_do_not_move(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    task = Classification(ClassificationParams())
    model = task.build_model(str(tiny_bert), LABELS)
    method = METHODS.get("freeze")(METHODS.get("freeze").Params(name="freeze"))
    model = method.apply(model, task.head_info(model))
    backbone = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    head = model.classifier.weight.clone()
    _train_steps(model, _batch(tokenizer))
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, backbone)
    assert not torch.equal(model.classifier.weight, head)


@pytest.mark.parametrize("placement,count", [("houlsby", 4), ("pfeiffer", 2)])
def test_adapters_start_as_identity(tiny_bert: Path, placement: str, count: int) -> None:
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.methods.adapter import AdapterParams

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModel.from_pretrained(str(tiny_bert)).eval()
    batch = _batch(tokenizer, labels=False)
    with torch.no_grad():
        plain = model(**batch).last_hidden_state
    adapted = insert_adapters(model, AdapterParams(placement=placement, reduction_factor=4))
    assert len(adapted) == count  # 2 layers: attention + FFN (houlsby) or FFN only (pfeiffer)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, plain)


def test_token_classification_with_lora_reloads(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    task = TokenClassification(TokenClassificationParams())
    method = METHODS.get("lora")(METHODS.get("lora").Params(name="lora"))
    model = method.apply(task.build_model(str(tiny_bert), ["PER", "LOC"]), task.head_info(
        task.build_model(str(tiny_bert), ["PER", "LOC"])))
    sentences = [["Ann", "visited", "Oslo"], ["Bo", "stayed"]]
    expected = task.tag(model, tokenizer, sentences, ["PER", "LOC"], 32, 8)
    save_model(tmp_path, task, method, model, tokenizer, ["PER", "LOC"], str(tiny_bert), 32)
    loaded = load_model(tmp_path)
    assert loaded.task.tag(loaded.model, tokenizer, sentences, ["PER", "LOC"], 32, 8) == expected


@pytest.mark.parametrize(("name", "arch"), CAUSAL_CASES)
def test_causal_lm_methods_train_save_reload(name: str, arch: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tuneforge.tasks.sft import SFT, SFTParams

    tiny_causal = request.getfixturevalue(arch)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_causal))
    task = SFT(SFTParams(packing=False))
    method = METHODS.get(name)(METHODS.get(name).Params(name=name))
    torch.manual_seed(0)
    model = method.apply(task.build_model(str(tiny_causal), []), task.head_info(None))
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    enc = tokenizer(["refund my order please", "where is the parcel"], padding=True, return_tensors="pt")
    batch = {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(5):
        loss = model(**batch).loss
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        last = model(**batch).loss.item()
        expected = model(**enc).logits
    assert last < first  # it trains
    save_model(tmp_path, task, method, model, tokenizer, [], str(tiny_causal), 64)
    with torch.no_grad():
        got = load_model(tmp_path).model(**enc).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_freeze_on_a_causal_lm_trains_only_an_untied_output_projection(tiny_gpt2: Path) -> None:
    """GPT-2 ties lm_head to the input embeddings: freeze must untie them, or 'frozen' embeddings would move."""
    from tuneforge.tasks.sft import SFT, SFTParams

    task = SFT(SFTParams(packing=False))
    model = task.build_model(str(tiny_gpt2), [])
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    before = model.get_input_embeddings().weight.detach().clone()
    model = METHODS.get("freeze")(METHODS.get("freeze").Params(name="freeze")).apply(model, task.head_info(model))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["lm_head.weight"]
    ids = torch.tensor([[5, 6, 7, 8]])
    _train_steps(model, {"input_ids": ids, "labels": ids})
    torch.testing.assert_close(model.get_input_embeddings().weight, before, rtol=0, atol=0)
    assert not torch.equal(model.get_output_embeddings().weight, before)
