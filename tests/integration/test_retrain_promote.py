"""Retrain plumbing, promote / rollback with history, and the server following `champion` (fast: runs of two
steps; whether a real retrain passes the gate is test_retrain_gate_real.py, slow).

A deployed run (version 1, champion) is retrained on new phrasings with replay (version 2, the challenger); its gate
is set so that it fails (it had two steps), so promoting it needs --force. A running server answers the registered
name with whichever run `champion` points to, re-checked every 0.2 s here."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl

MODEL = "intent-model"
PHRASES = {"refund": "reimburse me for the {p}", "track": "status of parcel {p}", "cancel": "abort purchase {p}"}


def new_rows(n_per_label: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = [{"text": f"{t.format(p=rng.choice(['lamp', 'desk', 'mug', 'sofa']))} {i}", "label": label}
            for label, t in PHRASES.items() for i in range(n_per_label)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def registered(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.monitoring.gate import GateThresholds
    from tuneforge.monitoring.retrain import retrain

    tmp = tmp_path_factory.mktemp("promote")
    space = tmp / "runs"
    cfg = base_config(tiny_bert, write_jsonl(tmp / "old.jsonl", make_intent_rows(12)), space, name="intents",
                      training={"max_steps": 2, "learning_rate": 5e-3},
                      tracking={"mlflow": True, "registered_name": MODEL})
    parent = tuneforge.train(parse_config(cfg), quiet=True).run_dir
    ra.promote(MODEL, 1, workspace=space, reason="first model")
    candidate = retrain(MODEL, write_jsonl(tmp / "new.jsonl", new_rows(10, 1)), replay=0.3, workspace=space,
                        overrides=["training.max_steps=2"], thresholds=GateThresholds(min_gain=0.9))
    return {"space": space, "parent": parent, "candidate": candidate}


def test_retrain_writes_a_gated_run_continued_from_the_champion(registered: dict) -> None:
    from tuneforge.monitoring import registry_aliases as ra

    space, candidate, parent = registered["space"], registered["candidate"], registered["parent"]
    assert candidate.parent == parent and candidate.registered == (MODEL, 2)
    gate = json.loads((candidate.run_dir / "gate.json").read_text())
    assert gate["passed"] is False and [r["set"] for r in gate["table"]] == ["old_test", "new_test"]
    assert gate["table"][0]["examples"] == len((parent / "data" / "test.jsonl").read_text().splitlines())
    counts = candidate.counts  # replayed examples are 30% of what the retrain trained on
    assert counts["replay_train"] == round(0.3 * counts["new_train"] / 0.7) > 0
    info = json.loads((candidate.run_dir / "retrain.json").read_text())
    assert info["parent"] == str(parent) and info["counts"] == counts and info["version"] == 2
    env = json.loads((candidate.run_dir / "environment.json").read_text())
    assert env["base_model"]["parent_run"]["path"] == str(parent)
    version = ra.Registry(space).version(MODEL, 2)
    assert version.gate == "failed" and version.run_dir == candidate.run_dir and "challenger" in version.aliases


def _classify(server, model: str, texts: list[str]) -> list[tuple[str, float]]:
    response = server.post("/v1/classify", {"model": model, "input": texts})
    assert response.status_code == 200, response.text
    return [(d["label"], round(d["score"], 3)) for d in response.json()["data"]]


def test_promote_refuses_a_failed_gate_and_the_server_follows_champion(registered: dict, cli) -> None:
    from serve_harness import running_server
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.serving.state import ServeSettings

    space, candidate = registered["space"], registered["candidate"]
    texts = [r["text"] for r in new_rows(2, 9)] + ["please refund order #1003", "cancel order #1010 now"]
    with running_server(ServeSettings(workspace=space, champion_check_s=0.2)) as server:
        ids = {m["id"] for m in server.get("/v1/models").json()["data"]}
        assert {MODEL, "intents", candidate.run_dir.name} <= ids
        as_parent, as_candidate = _classify(server, "intents", texts), _classify(server, candidate.run_dir.name, texts)
        assert as_parent != as_candidate  # the two runs answer differently, so who answers is visible
        assert _classify(server, MODEL, texts) == as_parent  # champion: version 1
        refused = cli("promote", MODEL, "--run", str(candidate.run_dir), "--workspace", str(space))
        assert refused.code == 2 and "failed its gate" in refused.err and "--force" in refused.err
        assert len(refused.err.strip().splitlines()) == 1
        forced = cli("promote", MODEL, "--version", "2", "--force", "--workspace", str(space), "--reason", "test")
        assert forced.code == 0, forced.err
        time.sleep(0.3)
        assert _classify(server, MODEL, texts) == as_candidate  # the same name now answers as version 2
        assert cli("rollback", MODEL, "--workspace", str(space)).code == 0
        time.sleep(0.3)
        assert _classify(server, MODEL, texts) == as_parent  # and back, without a restart
    assert ra.current_champion(MODEL, workspace=space).version == 1
    challenger = ra.Registry(space).alias(MODEL, ra.CHALLENGER)
    assert challenger is not None and challenger.version == 2  # the demoted version waits as the challenger
    events = ra.history(MODEL, workspace=space)
    moves = [(e.alias, e.from_version, e.to_version, e.action) for e in events]
    assert moves == [("champion", None, 1, "promote"), ("challenger", None, 2, "challenger"),
                     ("champion", 1, 2, "promote"), ("challenger", 2, None, "promote"),
                     ("champion", 2, 1, "rollback"), ("challenger", None, 2, "rollback")]
    assert events[2].forced and events[2].reason == "test" and all(e.by and e.at.endswith("Z") for e in events)
    shown = cli("promote", "--history", MODEL, "--workspace", str(space))
    assert shown.code == 0 and "rollback" in shown.out and "forced" in shown.out
    again = cli("rollback", MODEL, "--workspace", str(space))  # nothing earlier than version 1
    assert again.code == 2 and "no earlier champion" in again.err


def test_bad_input_is_one_line_and_exit_2(registered: dict, cli, tmp_path: Path) -> None:
    space = str(registered["space"])
    bad = write_jsonl(tmp_path / "unknown-label.jsonl", [{"text": f"hello {i}", "label": "greet"} for i in range(20)])
    cases = [("retrain", MODEL, "--data", str(tmp_path / "missing.jsonl"), "--workspace", space),
             ("retrain", MODEL, "--data", str(bad), "--replay", "1.5", "--workspace", space),
             ("retrain", MODEL, "--data", str(bad), "--workspace", space),  # a label the head lacks
             ("retrain", "no-such-model", "--data", str(bad), "--workspace", space),
             ("promote", "no-such-model", "--version", "1", "--workspace", space),
             ("promote", MODEL, "--version", "99", "--workspace", space),
             ("promote", MODEL, "--workspace", space),
             ("rollback", MODEL, "--workspace", str(tmp_path))]
    for args in cases:
        res = cli(*args)
        assert res.code == 2, (args, res.out, res.err)
        assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err, (args, res.err)
    assert "--from-base" in cli(*cases[2]).err
