"""The gate on real retrains (slow: three tiny-BERT runs trained long enough to learn), registered in a workspace
MLflow store.

The deployed run learns three intents from one set of phrasings; the new data says the same intents in new words.
A retrain on it (with replay) must pass the gate; a planted model trained on the new data with shuffled labels must
be refused and cannot be promoted. (Promote / rollback / history and the server following `champion` are in the
fast test_retrain_promote.py.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl

NEW_PHRASINGS = {
    "refund": ["reimburse me for the {p}", "money back on {p} pls", "return cash for the {p}",
               "I was charged for the {p}, reimburse it"],
    "track": ["status of parcel {n}", "{p} delivery eta", "is parcel {n} on its way", "locate my {p} shipment"],
    "cancel": ["abort purchase {n}", "void my {p} purchase", "drop purchase {n} right away",
               "annul the {p} purchase"],
}
PRODUCTS = ["lamp", "kettle", "chair", "desk", "blender", "backpack", "monitor", "jacket", "mug", "sofa"]
MODEL = "intent-model"
pytestmark = pytest.mark.slow


def new_rows(n_per_label: int, seed: int, shuffle_labels: bool = False) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = [{"text": rng.choice(t).format(n=f"#{2000 + i}", p=rng.choice(PRODUCTS)) + f" {i}", "label": label}
            for label, t in NEW_PHRASINGS.items() for i in range(n_per_label)]
    if shuffle_labels:
        labels = [r["label"] for r in rows]
        rng.shuffle(labels)
        rows = [{**r, "label": lab} for r, lab in zip(rows, labels, strict=True)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def retrained(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.monitoring.retrain import retrain

    tmp = tmp_path_factory.mktemp("retrain")
    space = tmp / "runs"
    cfg = base_config(tiny_bert, write_jsonl(tmp / "old.jsonl", make_intent_rows(40)), space, name="intents",
                      data={"split": {"train": 0.6, "validation": 0.15, "test": 0.25}},
                      training={"epochs": 12, "learning_rate": 5e-3, "early_stopping": {"patience": None}},
                      tracking={"mlflow": True, "registered_name": MODEL})
    parent = tuneforge.train(parse_config(cfg), quiet=True).run_dir
    ra.promote(MODEL, 1, workspace=space, reason="first model")
    good = retrain(MODEL, write_jsonl(tmp / "new.jsonl", new_rows(30, 1)), replay=0.3, workspace=space)
    worse = retrain(parent, write_jsonl(tmp / "shuffled.jsonl", new_rows(30, 2, shuffle_labels=True)),
                    replay=0.0, name="planted-worse", workspace=space)
    return {"space": space, "parent": parent, "good": good, "worse": worse}


def test_good_retrain_passes_the_gate_with_replay(retrained: dict) -> None:
    import json

    good = retrained["good"]
    assert good.decision.passed, good.decision.reasons
    rows = {r["set"]: r for r in good.decision.table}
    assert rows["new_test"]["candidate"] > rows["new_test"]["champion"] and rows["new_test"]["p_value"] < 0.05
    assert good.registered == (MODEL, 2) and (good.run_dir / "gate.json").is_file()
    # replay: 30% of the training examples come from the original training split (before cleaning)
    counts = good.counts
    assert counts["replay_train"] == round(0.3 * counts["new_train"] / 0.7)
    assert counts["old_test"] == len((retrained["parent"] / "data" / "test.jsonl").read_text().splitlines())
    env = json.loads((good.run_dir / "environment.json").read_text())
    assert env["base_model"]["parent_run"]["path"] == str(retrained["parent"])


def test_planted_worse_model_is_refused_and_cannot_be_promoted(retrained: dict, cli) -> None:
    from tuneforge.monitoring import registry_aliases as ra

    worse, space = retrained["worse"], retrained["space"]
    assert not worse.decision.passed
    assert any("old_test" in r and "significant regression" in r for r in worse.decision.reasons)
    version = worse.registered[1]
    res = cli("promote", MODEL, "--version", str(version), "--workspace", str(space))
    assert res.code == 2 and "failed its gate" in res.err and "--force" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert ra.current_champion(MODEL, workspace=space).version == 1
