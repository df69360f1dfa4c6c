"""`model.from_run`: a run continued from a finished one starts at the parent's weights (full and LoRA), keeps its
labels and head, records the parent in its lineage, and refuses combinations that cannot continue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl


def _train(cfg: dict) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    return tuneforge.train(parse_config(cfg), quiet=True).run_dir


@pytest.fixture(scope="module")
def parents(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("continue")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(20))
    out = {}
    for method in ("full", "lora"):
        cfg = base_config(tiny_bert, data, tmp / "runs", name=f"parent-{method}", method={"name": method},
                          training={"max_steps": 3, "learning_rate": 5e-3})
        out[method] = _train(cfg)
    out["data"] = data
    return out


def _child(data_file: Path, out: Path, parent: Path, **extra) -> dict:
    cfg = base_config(Path("unused"), data_file, out, **extra)
    cfg["model"] = {"from_run": str(parent)}
    return cfg


def _logits(model, tokenizer, texts: list[str]):
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True)
    model.eval()
    with torch.inference_mode():
        return model(**enc).logits


@pytest.mark.parametrize("method", ["full", "lora"])
def test_continued_run_starts_at_the_parents_weights(parents: dict[str, Path], method: str) -> None:
    from tuneforge.config import parse_config, resolve_config
    from tuneforge.registry.loaded_run import load_run
    from tuneforge.training import builder

    parent = load_run(parents[method])
    cfg = resolve_config(parse_config(_child(parents["data"], parents[method].parent, parents[method],
                                             name=f"child-{method}", method={"name": method})))
    assert cfg.data.labels == parent.labels  # the parent's head decides the labels
    recipe = builder.resolve(cfg)
    built = builder.build(recipe, list(cfg.data.labels))
    texts = ["please refund order #1003", "where is my order #1010", "cancel my lamp order"]
    child, theirs = _logits(built.model, recipe.tokenizer, texts), _logits(parent.model(), parent.tokenizer, texts)
    assert child.shape == theirs.shape and (child - theirs).abs().max() < 1e-5
    # A fresh run from the same base does not: the head is new (so the comparison above could fail).
    fresh = resolve_config(parse_config(base_config(Path(parent.config.model.path), parents["data"],
                                                    parents[method].parent, name="fresh", method={"name": method})))
    other = builder.build(builder.resolve(fresh), parent.labels)
    assert (_logits(other.model, recipe.tokenizer, texts) - theirs).abs().max() > 1e-3
    assert built.trainable > 0 and (method == "full" or built.trainable < built.total)
    assert recipe.base_lineage["parent_run"]["path"] == str(parents[method])  # lineage names the parent


@pytest.mark.slow  # a whole second training run
def test_continued_lora_run_trains_on_and_records_its_parent(parents: dict[str, Path]) -> None:
    from tuneforge.registry.loaded_run import load_run

    parent = load_run(parents["lora"])
    cfg = _child(parents["data"], parents["lora"].parent, parents["lora"], name="child-trained",
                 method={"name": "lora"}, training={"max_steps": 4, "learning_rate": 5e-3})
    child_dir = _train(cfg)
    env = json.loads((child_dir / "environment.json").read_text())
    assert env["base_model"]["parent_run"]["path"] == str(parents["lora"])
    assert env["base_model"]["parent_run"]["adapter"] is True
    child = load_run(child_dir)
    assert child.labels == parent.labels and child.meta["base_model"] == parent.meta["base_model"]
    texts = ["please refund order #1003", "cancel my lamp order"]
    moved = (_logits(child.model(), child.tokenizer, texts) - _logits(parent.model(), parent.tokenizer, texts))
    assert moved.abs().max() > 1e-6  # it trained on from there (the adapter was trainable)


def test_continuing_refuses_other_labels_and_method(parents: dict[str, Path], tmp_path: Path) -> None:
    from tuneforge.config import parse_config, resolve_config
    from tuneforge.errors import ConfigError

    def cfg(**extra):
        return parse_config(_child(parents["data"], tmp_path, parents["lora"], name="bad", **extra))

    with pytest.raises(ConfigError, match=r"data\.labels"):
        resolve_config(cfg(method={"name": "lora"}, data={"labels": ["a", "b"]}))
    with pytest.raises(ConfigError, match="method"):
        resolve_config(cfg(method={"name": "lora", "r": 4}))
    with pytest.raises(ConfigError, match=r"model\.from_run"):
        resolve_config(parse_config(_child(parents["data"], tmp_path, tmp_path / "nope", name="bad")))
