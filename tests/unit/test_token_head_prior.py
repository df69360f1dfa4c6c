"""The NER head starts at the training tags' prior, keeps it under LoRA, trains, and reloads to the same logits.

Why it matters: with a zero bias the first LoRA steps on an O-heavy set (WNUT-17) collapse every token to one
feature vector and the model predicts no entities (see docs/bench/wnut17.md)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tuneforge.methods import METHODS
from tuneforge.registry.artifacts import load_model, save_model
from tuneforge.tasks.token_classification import TokenClassification, TokenClassificationParams

LABELS = ["LOC", "PER"]


def _o_heavy_rows() -> list[dict[str, list[str]]]:
    """20 sentences of 10 words, one person in every other one: 1% B-PER, 99% O, no LOC at all."""
    rows = []
    for i in range(20):
        tokens = ["we", "went", "there", "and", "it", "was", "fine", "on", "day", str(i)]
        tags = ["O"] * 10
        if i % 2 == 0:
            tokens[0], tags[0] = "Ann", "B-PER"
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def _logits(model, tokenizer, sentences: list[list[str]]) -> torch.Tensor:
    enc = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**enc).logits


def test_head_bias_starts_at_training_tag_frequencies(tiny_bert: Path, tmp_path: Path) -> None:
    task = TokenClassification(TokenClassificationParams())
    torch.manual_seed(0)
    model = task.build_model(str(tiny_bert), LABELS)
    facts = task.before_training(model, None, {"train": _o_heavy_rows()}, 0, tmp_path)
    probs = torch.softmax(model.classifier.bias.double(), 0)
    tags = [model.config.id2label[i] for i in range(len(probs))]
    # 200 tags: 190 O, 10 B-PER; add-one smoothing over the 5 tags gives O 191/205, B-PER 11/205, others 1/205.
    assert math.isclose(probs[tags.index("O")].item(), 191 / 205, rel_tol=1e-6)
    assert math.isclose(probs[tags.index("B-PER")].item(), 11 / 205, rel_tol=1e-6)
    assert math.isclose(probs[tags.index("I-LOC")].item(), 1 / 205, rel_tol=1e-6)  # unseen: small, finite
    assert facts["entity_tag_share"] == 0.05


def test_prior_bias_can_be_switched_off(tiny_bert: Path, tmp_path: Path) -> None:
    task = TokenClassification(TokenClassificationParams(prior_bias=False))
    model = task.build_model(str(tiny_bert), LABELS)
    before = model.classifier.bias.clone()
    assert task.before_training(model, None, {"train": _o_heavy_rows()}, 0, tmp_path) == {}
    assert torch.equal(model.classifier.bias, before)


def test_lora_trains_the_prior_head_and_reloads_it(tiny_bert: Path, tmp_path: Path) -> None:
    """The trainable copy PEFT makes (modules_to_save) carries the prior, its weights move in training, and the
    saved run gives the trained logits back (not a fresh head's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    task = TokenClassification(TokenClassificationParams())
    method = METHODS.get("lora")(METHODS.get("lora").Params(name="lora"))
    torch.manual_seed(0)
    model = task.build_model(str(tiny_bert), LABELS)
    rows = _o_heavy_rows()
    task.before_training(model, tokenizer, {"train": rows}, 0, tmp_path)
    prior = model.classifier.bias.clone()
    model = method.apply(model, task.head_info(model))
    head = model.base_model.model.classifier.modules_to_save["default"]
    assert head.weight.requires_grad and head.bias.requires_grad
    torch.testing.assert_close(head.bias, prior)
    assert torch.softmax(head.bias, 0)[model.config.label2id["O"]] > 0.9  # the prior, not a uniform start
    start = head.weight.clone()

    batch = task.collator(tokenizer)(list(task.encode(rows, tokenizer, LABELS, 32)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    assert (head.weight - start).abs().max() > 1e-3
    sentences = [["Ann", "went", "there"], ["it", "was", "fine", "on", "day", "3"]]
    expected = _logits(model, tokenizer, sentences)

    save_model(tmp_path / "model", task, method, model, tokenizer, LABELS, str(tiny_bert), 32)
    loaded = load_model(tmp_path / "model")
    torch.testing.assert_close(_logits(loaded.model, tokenizer, sentences), expected, rtol=1e-4, atol=1e-5)
