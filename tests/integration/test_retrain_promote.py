"""Retrain with replay behind the gate, promote / rollback with history, and the server following `champion`:
tiny BERT runs registered in a workspace MLflow store.

The deployed run learns three intents from one set of phrasings; the new data says the same intents in new words.
A retrain on it (with replay) must pass the gate; a planted model trained on the new data with shuffled labels must
be refused; promote / rollback move the aliases with their history; a running server answers the registered name
with whichever run `champion` points to."""

from __future__ import annotations

import random
import time
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


def _classify(server, model: str, texts: list[str]) -> list[dict]:
    response = server.post("/v1/classify", {"model": model, "input": texts})
    assert response.status_code == 200, response.text
    return [(d["label"], round(d["score"], 3)) for d in response.json()["data"]]


def test_server_follows_champion_and_history_records_moves(retrained: dict, cli) -> None:
    from serve_harness import running_server
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.serving.state import ServeSettings

    space, good = retrained["space"], retrained["good"]
    texts = [r["text"] for r in new_rows(4, 9)] + ["please refund order #1003", "cancel order #1010 now"]
    with running_server(ServeSettings(workspace=space, champion_check_s=0.2)) as server:
        ids = {m["id"] for m in server.get("/v1/models").json()["data"]}
        assert MODEL in ids and "intents" in ids
        as_parent, as_good = _classify(server, "intents", texts), _classify(server, good.run_dir.name, texts)
        assert as_parent != as_good  # the two runs answer differently, so who answers is visible
        assert _classify(server, MODEL, texts) == as_parent  # champion: version 1
        res = cli("promote", MODEL, "--run", str(good.run_dir), "--workspace", str(space), "--reason", "retrain")
        assert res.code == 0, res.err
        time.sleep(0.3)
        assert _classify(server, MODEL, texts) == as_good  # the same name now answers as version 2, no restart
        assert cli("rollback", MODEL, "--workspace", str(space)).code == 0
        time.sleep(0.3)
        assert _classify(server, MODEL, texts) == as_parent
    assert ra.current_champion(MODEL, workspace=space).version == 1
    challenger = ra.Registry(space).alias(MODEL, ra.CHALLENGER)
    assert challenger is not None and challenger.version == 2  # the demoted version waits as the challenger
    moves = [(e.alias, e.from_version, e.to_version, e.action) for e in ra.history(MODEL, workspace=space)]
    assert moves[0] == ("champion", None, 1, "promote")
    assert ("champion", 1, 2, "promote") in moves and moves[-2:] == [("champion", 2, 1, "rollback"),
                                                                     ("challenger", 3, 2, "rollback")]
    assert all(e.by and e.at.endswith("Z") for e in ra.history(MODEL, workspace=space))
    shown = cli("promote", "--history", MODEL, "--workspace", str(space))
    assert shown.code == 0 and "rollback" in shown.out


def test_bad_input_is_one_line_and_exit_2(retrained: dict, cli, tmp_path: Path) -> None:
    space = retrained["space"]
    cases = [("retrain", MODEL, "--data", str(tmp_path / "missing.jsonl"), "--workspace", str(space)),
             ("retrain", MODEL, "--data", str(tmp_path / "missing.jsonl"), "--replay", "1.5", "--workspace",
              str(space)),
             ("promote", "no-such-model", "--version", "1", "--workspace", str(space)),
             ("promote", MODEL, "--version", "99", "--workspace", str(space)),
             ("rollback", MODEL, "--workspace", str(tmp_path))]
    for args in cases:
        res = cli(*args)
        assert res.code == 2, (args, res.out, res.err)
        assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err, res.err
