"""data.augment: EDA copies of the training split only (never validation/test, no leakage), labels kept, seeded;
synonyms are the base model's embedding neighbours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import base_config, make_intent_rows, write_jsonl

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def _cfg(**augment: Any) -> Any:
    from tuneforge.config import parse_config

    raw = base_config(Path("m"), Path("t.jsonl"), Path("out"), data={"augment": augment})
    return parse_config(raw)


def _splits() -> dict[str, list[dict[str, Any]]]:
    from tuneforge.data.clean import record_hash

    train = [{"text": " ".join(f"{w}{i}" for w in WORDS[:5]), "label": f"l{i % 2}"} for i in range(6)]
    for i, ex in enumerate(train):
        ex.update(_src=f"t.jsonl:{i + 1}", _rid=record_hash(ex["text"]))
    return {"train": train, "validation": [{"text": "zulu yankee", "label": "l0"}],
            "test": [{"text": "xray whiskey", "label": "l1"}]}


def _classification() -> Any:
    from tuneforge.tasks import TASKS

    cls = TASKS.get("classification")
    return cls(cls.Params(name="classification"))


def test_adds_n_rows_per_example_to_train_only_with_labels_kept() -> None:
    from tuneforge.data.augment import augment_split

    splits = _splits()
    held = {k: [dict(e) for e in v] for k, v in splits.items() if k != "train"}
    train, report = augment_split(splits, _cfg(n=3, edits=["swap", "delete"]), _classification())
    original = splits["train"]
    added = report["rows_added"]
    # 3 copies per example, less the copies that came out the same as another (counted, never added twice)
    assert added + report["skipped"].get("duplicate", 0) == 18 and set(report["skipped"]) <= {"duplicate"}
    assert train[:len(original)] == original and len(train) == len(original) + added and added >= 15
    assert sum(report["by_kind"].values()) == added and len({ex["text"] for ex in train}) == len(train)
    assert set(report["by_kind"]) == {"swap", "delete"} and report["applied_to"] == "train"
    parents = {ex["_rid"]: ex for ex in original}
    for new in train[len(original):]:
        assert new["label"] == parents[new["_rid"]]["label"]  # the parent's label, and its record id (forget)
        assert new["text"] != parents[new["_rid"]]["text"] and new["_augment"] in ("swap", "delete")
    assert {k: splits[k] for k in held} == held  # validation and test untouched


def test_an_augmented_text_equal_to_a_test_text_is_dropped() -> None:
    from tuneforge.data.augment import augment_split

    splits = {"train": [{"text": "alpha bravo", "label": "a"}, {"text": "charlie delta echo", "label": "b"}],
              "validation": [], "test": [{"text": "Bravo, alpha!", "label": "a"}]}  # what a swap makes of row 1
    train, report = augment_split(splits, _cfg(n=1, edits=["swap"]), _classification())
    assert report["skipped"] == {"would_leak_into_validation_or_test": 1} and report["rows_added"] == 1
    assert [ex["text"] for ex in train[2:]] != ["bravo alpha"]


def test_augmentation_is_deterministic_under_the_seed() -> None:
    from tuneforge.data.augment import augment_split

    task = _classification()
    first, _ = augment_split(_splits(), _cfg(n=2, edits=["swap", "delete"], seed=3), task)
    again, _ = augment_split(_splits(), _cfg(n=2, edits=["swap", "delete"], seed=3), task)
    other, _ = augment_split(_splits(), _cfg(n=2, edits=["swap", "delete"], seed=4), task)
    assert first == again and first != other


def _known_neighbour_model(tmp_path: Path) -> Path:
    """A model folder (MiniLM's tokenizer, a random 32-wide input embedding matrix in model.safetensors) where the
    embedding of 'glad' is that of 'happy' plus a little noise: the one neighbour of 'happy' that is known."""
    import json
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    from tuneforge.models.loading import default_model_path

    out = tmp_path / "tiny"
    out.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, out / name)
    config = json.loads((default_model_path() / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden_size": 32}))
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.02, (len(vocab), 32)).astype(np.float32)
    happy, glad = vocab.index("happy"), vocab.index("glad")
    weight[glad] = weight[happy] + rng.normal(0, 0.001, 32)
    save_file({"embeddings.word_embeddings.weight": weight}, str(out / "model.safetensors"))
    return out


def test_synonyms_are_the_base_models_embedding_neighbours(tmp_path: Path) -> None:
    from tuneforge.data.augment import augment_split
    from tuneforge.data.neighbours import EmbeddingNeighbours

    model = _known_neighbour_model(tmp_path)
    neighbours = EmbeddingNeighbours.from_model(str(model), 3, 0.95)
    assert neighbours.synonyms("happy") == ["glad"] and neighbours.synonyms("glad") == ["happy"]
    assert neighbours.synonyms("the") == []  # stop words are never replaced
    splits = {"train": [{"text": "I am Happy today", "label": "a"}], "validation": [], "test": []}
    train, report = augment_split(splits, _cfg(n=1, edits=["synonym"], min_similarity=0.95, neighbours=3)
                                  .model_copy(update={"model": _cfg().model.model_copy(update={"path": str(model)})}),
                                  _classification())
    assert train[1]["text"] == "I am Glad today" and report["by_kind"] == {"synonym": 1}


def test_prepared_data_reports_the_augmentation(tiny_bert: Path, tmp_path: Path) -> None:
    from tuneforge.api import prepare_data
    from tuneforge.config import parse_config

    data = write_jsonl(tmp_path / "d.jsonl", make_intent_rows(10))
    plain = parse_config(base_config(tiny_bert, data, tmp_path / "runs"))
    augmented = parse_config(base_config(tiny_bert, data, tmp_path / "runs",
                                         data={"augment": {"n": 2, "edits": ["swap", "delete"]}}))
    without, with_aug = prepare_data(plain), prepare_data(augmented)
    section = with_aug.report["augmentation"]
    assert with_aug.report["rows"]["train"] == without.report["rows"]["train"] + section["rows_added"]
    assert section["rows_added"] > without.report["rows"]["train"]  # most of the 2 per example survive dedupe
    for split in ("validation", "test"):
        assert with_aug.report["fingerprints"][split] == without.report["fingerprints"][split]


def test_bad_augment_key_names_the_nearest_valid_key() -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="edits"):
        _cfg(edit=["swap"])


def test_a_task_without_free_text_refuses_augmentation() -> None:
    from tuneforge.data.augment import augment_split
    from tuneforge.errors import ConfigError
    from tuneforge.tasks import TASKS

    ner = TASKS.get("token_classification")(TASKS.get("token_classification").Params(name="token_classification"))
    with pytest.raises(ConfigError, match=r"data\.augment"):
        augment_split(_splits(), _cfg(n=1), ner)


@pytest.mark.slow
def test_paraphrases_come_from_the_named_generative_run(tiny_causal: Path, tmp_path: Path) -> None:
    """A finished (tiny) SFT run writes the paraphrases: n per example, seeded, labels kept, kind 'paraphrase'."""
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.data.augment import augment_split

    chat = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": f"say {w}", "completion": f"{w} again"} for w in WORDS])
    sft = base_config(tiny_causal, chat, tmp_path / "runs", name="paraphraser", task={"name": "sft"},
                      training={"epochs": 1, "max_steps": 1, "threads": 1})
    tuneforge.train(parse_config(sft), quiet=True)
    para = {"run": str(tmp_path / "runs" / "paraphraser"), "n": 2, "temperature": 1.0, "max_new_tokens": 8}
    cfg = _cfg(n=0, paraphrase=para)
    first, report = augment_split(_splits(), cfg, _classification())
    again, _ = augment_split(_splits(), cfg, _classification())
    assert first == again and report["by_kind"] == {"paraphrase": report["rows_added"]}
    assert report["rows_added"] + sum(report["skipped"].values()) == 12  # 2 per example, each counted
    parents = {ex["_rid"]: ex["label"] for ex in _splits()["train"]}
    assert all(parents[ex["_rid"]] == ex["label"] and ex["_augment"] == "paraphrase" for ex in first[6:])
