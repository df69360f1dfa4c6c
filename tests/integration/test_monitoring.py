"""`tuneforge monitor` end to end on a tiny trained classifier: the feedback endpoint through the real server, drift
found on planted shifted traffic and not on traffic like training, verdict JSON and exit codes, a damaged or empty
request log, --watch with a webhook, and export-for-labelling merged back as a new dataset version."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import base_config, make_intent_rows, write_jsonl
from serve_harness import running_server

DAY = 86400.0
NOW = 1_780_000_000.0  # a fixed "now": traffic is written with simulated times before it
OFF_TOPIC = ["the weather in {c} is {w} today", "recipe for {w} soup with {c} herbs", "who won the {c} {w} final",
             "translate {w} into the language of {c}", "best hiking trail near {c} for {w} lovers"]


@pytest.fixture(scope="module")
def workspace(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("monitor")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(60))
    cfg = base_config(tiny_bert, data, tmp / "runs", name="intent",
                      training={"epochs": 3, "learning_rate": 5e-3, "threads": 1})
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs"


def _shifted(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(OFF_TOPIC).format(c=rng.choice(["Oslo", "Lima", "Kyoto"]),
                                         w=rng.choice(["quantum", "mushroom", "cricket", "opera"])) for _ in range(n)]


def _write_traffic(workspace: Path, days: list[list[str]], log_name: str) -> Path:
    """One day of texts per list, logged as the server logs /v1/classify (the run's own answers), at simulated
    times; the log goes to its own workspace copy so that tests do not see each other's traffic."""
    from tuneforge.registry.loaded_run import load_run
    from tuneforge.serving.request_log import RequestLog, RequestRecord, log_path

    ws = workspace.parent / log_name
    ws.mkdir(exist_ok=True)
    if not (ws / "intent").exists():
        (ws / "intent").symlink_to(workspace / "intent")
    run = load_run(workspace / "intent")
    log = RequestLog(log_path(ws), retention_days=None)
    start = NOW - len(days) * DAY
    for d, texts in enumerate(days):
        preds = run.predict(texts)
        for i, (text, pred) in enumerate(zip(texts, preds, strict=True)):
            log.write(RequestRecord("/v1/classify", 200, "k", "intent", [text],
                                    [{"label": pred["label"], "score": pred["score"]}], [pred["top"]],
                                    time=start + d * DAY + 60 * i, response_id=f"classify-{log_name}-{d}-{i}"))
    log.close()
    return ws


def _like_training(n: int, seed: int) -> list[str]:
    return [r["text"] for r in make_intent_rows(n // 3 + 1, seed=seed)][:n]


def test_feedback_endpoint_records_live_accuracy(workspace: Path) -> None:
    from tuneforge.monitoring.log_reader import read_served
    from tuneforge.serving.app import ServeSettings
    from tuneforge.serving.request_log import log_path

    with running_server(ServeSettings(workspace=workspace, rate_limit=100_000, retention_days=None)) as server:
        reply = server.post("/v1/classify", {"model": "intent", "input": ["refund order #1000", "track #22"]})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        served = body["data"][1]["label"]
        ok = server.post("/v1/feedback", {"id": body["id"], "index": 1, "label": served})
        assert ok.status_code == 200, ok.text
        assert ok.json()["correct"] is True and ok.json()["model"] == "intent"
        other = next(lab for lab in ("refund", "track", "cancel") if lab != body["data"][0]["label"])
        assert server.post("/v1/feedback", {"id": body["id"], "label": other}).json()["correct"] is False
        for resp, status, code in (
                (server.post("/v1/feedback", {"id": "classify-nope", "label": "refund"}), 404, "request_not_found"),
                (server.post("/v1/feedback", {"id": body["id"]}), 400, "invalid_value"),
                (server.post("/v1/feedback", {"id": body["id"], "lable": "refund"}), 400, "invalid_value"),
                (server.post("/v1/feedback", {"id": body["id"], "label": "pizza"}), 400, "unknown_label"),
                (server.post("/v1/feedback", {"id": body["id"], "index": 5, "label": "refund"}), 400,
                 "invalid_value")):
            assert resp.status_code == status, resp.text
            assert resp.json()["error"]["code"] == code
    rows = read_served(log_path(workspace), "intent", 0, 2e9)
    by_index = {r.index: r for r in rows if r.response_id == body["id"]}
    assert by_index[1].feedback_label == served and by_index[0].feedback_label == other


def test_old_request_log_without_response_id_stays_readable(tmp_path: Path) -> None:
    from tuneforge.monitoring.log_reader import read_served
    from tuneforge.serving.request_log import RequestLog, RequestRecord

    path = tmp_path / "requests.sqlite"
    db = sqlite3.connect(path)  # the schema before feedback existed
    db.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, key_id TEXT, "
               "route TEXT NOT NULL, model TEXT, status INTEGER NOT NULL, input TEXT, output TEXT, scores TEXT, "
               "latency_ms REAL, prompt_tokens INTEGER, completion_tokens INTEGER, error TEXT)")
    db.execute("INSERT INTO requests (time, route, model, status, input, output) VALUES "
               "(5, '/v1/classify', 'm', 200, '[\"old\"]', '[{\"label\": \"a\", \"score\": 0.9}]')")
    db.commit()
    db.close()
    assert read_served(path, "m", 0, 10)[0].text == "old"
    log = RequestLog(path, retention_days=None)
    log.write(RequestRecord("/v1/classify", 200, None, "m", ["new"], [{"label": "b", "score": 0.5}], time=6,
                            response_id="classify-x"))
    log.close()
    rows = read_served(path, "m", 0, 10)
    assert [(r.text, r.response_id) for r in rows] == [("old", None), ("new", "classify-x")]


def test_drift_found_on_shifted_traffic_not_on_training_like_traffic(workspace: Path, cli: Any) -> None:
    same = _write_traffic(workspace, [_like_training(40, seed=10 + d) for d in range(4)], "same")
    res = cli("monitor", "intent", "--workspace", same, "--since", "4d", "--now", str(NOW), "--min-requests", "20")
    assert res.code == 0, res.out + res.err
    verdict = json.loads((same / ".tuneforge" / "monitor" / "intent" / "verdict.json").read_text())
    assert verdict["status"] == "ok" and verdict["alarms"] == []
    assert len(verdict["windows"]) == 4 and all(w["status"] == "ok" for w in verdict["windows"])

    days = [_like_training(40, seed=20), _like_training(40, seed=21), _shifted(40, 1), _shifted(40, 2)]
    drift = _write_traffic(workspace, days, "drift")
    out = drift / "report"
    res = cli("monitor", "intent", "--workspace", drift, "--since", "4d", "--now", str(NOW), "--out", out,
              "--export-for-labelling", drift / "label.jsonl", "--count", "10")
    assert res.code == 4, res.out + res.err
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["status"] == "drift" and verdict["exit_code"] == 4
    assert [w["status"] for w in verdict["windows"]] == ["ok", "ok", "drift", "drift"]
    assert verdict["alarms"] == [verdict["windows"][3]["end_iso"]]
    assert "embedding_mmd" in verdict["windows"][2]["rejected"]
    page = (out / "report.html").read_text()
    assert "DRIFT" in page and "data:image/png;base64," in page and "http://" not in page.replace(
        "http://www.w3.org", "")
    exported = [json.loads(line) for line in (drift / "label.jsonl").read_text().splitlines()]
    assert len(exported) == 10 and all(e["request_id"].startswith("classify-drift-") for e in exported)
    shifted_texts = set(days[2] + days[3])
    assert sum(e["text"] in shifted_texts for e in exported) >= 6  # mostly the drifted inputs


def test_damaged_or_empty_request_log_is_a_clear_error(workspace: Path, cli: Any, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".tuneforge").mkdir(parents=True)
    (ws / "intent").symlink_to(workspace / "intent")
    res = cli("monitor", "intent", "--workspace", ws)
    assert res.code == 2 and "requests.sqlite" in res.err and "tuneforge serve" in res.err, res.err
    log = ws / ".tuneforge" / "requests.sqlite"
    log.write_bytes(b"this is not sqlite" * 100)
    res = cli("monitor", "intent", "--workspace", ws)
    assert res.code == 2 and str(log) in res.err.replace("\n", "") and "move it aside" in res.err, res.err
    assert "Traceback" not in res.err
    log.unlink()
    from tuneforge.serving.request_log import RequestLog

    RequestLog(log).close()  # a fresh, empty log
    res = cli("monitor", "intent", "--workspace", ws, "--since", "2d")
    assert res.code == 2 and "no answered requests" in res.err and "2d" in res.err, res.err


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:  # http.server calls it by this name
        length = int(self.headers["Content-Length"])
        _Receiver.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_watch_calls_the_webhook_on_drift(workspace: Path, cli: Any) -> None:
    days = [_like_training(40, seed=40), _shifted(40, 5), _shifted(40, 6)]
    ws = _write_traffic(workspace, days, "watch")
    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        res = cli("monitor", "intent", "--workspace", ws, "--since", "3d", "--now", str(NOW), "--watch",
                  "--interval", "1s", "--checks", "2", "--webhook", url)
    finally:
        receiver.shutdown()
        thread.join(timeout=10)
    assert res.code == 4, res.out + res.err
    assert res.out.count("webhook sent") == 2
    assert [r["status"] for r in _Receiver.received] == ["drift", "drift"]
    assert _Receiver.received[0]["model"] == "intent" and _Receiver.received[0]["alarms"]


def test_labelled_export_merges_back_as_a_fingerprinted_version(workspace: Path, cli: Any, tmp_path: Path) -> None:
    from tuneforge.data.report import fingerprint

    source = write_jsonl(tmp_path / "v1.jsonl", make_intent_rows(5))
    export = tmp_path / "label.jsonl"
    rows = [{"text": f"brand new phrasing {i}", "label": None, "request_id": f"classify-{i}"} for i in range(4)]
    rows[0]["label"], rows[1]["label"], rows[2]["label"] = "refund", "cancel", "track"
    rows.append({"text": make_intent_rows(5)[0]["text"], "label": "refund", "request_id": "classify-dup"})
    write_jsonl(export, rows)
    (tmp_path / "label.jsonl.meta.json").write_text(json.dumps({"request_log": "/ws/.tuneforge/requests.sqlite",
                                                                 "model": "intent"}))
    out = tmp_path / "v2.jsonl"
    res = cli("data", "merge-labels", export, "--into", source, "--out", out)
    assert res.code == 0, res.out + res.err
    merged = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(merged) == 15 + 3 and merged[-3:][0] == {"text": "brand new phrasing 0", "label": "refund"}
    lineage = json.loads((tmp_path / "v2.jsonl.lineage.json").read_text())
    assert lineage["version"] == 2 and lineage["fingerprint"] == fingerprint(merged)
    assert lineage["parent"]["fingerprint"] == fingerprint(make_intent_rows(5))
    assert lineage["labelled"]["request_ids"] == ["classify-0", "classify-1", "classify-2"]
    assert lineage["labelled"]["unlabelled_skipped"] == 1 and lineage["labelled"]["already_in_source"] == 1
    assert lineage["labelled"]["request_log"] == "/ws/.tuneforge/requests.sqlite"
    res = cli("data", "merge-labels", out, "--into", out, "--out", tmp_path / "v3.jsonl")  # a version of a version
    assert res.code == 0 and json.loads((tmp_path / "v3.jsonl.lineage.json").read_text())["version"] == 3
    write_jsonl(export, [{"text": "x", "label": "pizza"}])
    res = cli("data", "merge-labels", export, "--into", source, "--out", tmp_path / "bad.jsonl")
    assert res.code == 2 and f"{export}:1" in res.err and "--allow-new-labels" in res.err, res.err
