"""`tuneforge forget`: a planted record is erased from a data file, a run's prepared data and reports, and the
request log; every run trained on it (and only those) is named for retraining; --dry-run changes nothing; the
receipt holds hashes, never the text."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml

PLANTED = "Please erase me: Jane Doe of 12 Elm Street wants her refund"
# The same record as a user would give it back: other case, spacing and punctuation (it matches however cleaned).
GIVEN_BACK = {"text": "please ERASE me  jane doe of 12 elm street wants her refund!", "label": "refund"}
IN_LOG_ONLY = "write to jane.doe@example.com about the blender order"


def _tree_digest(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file()}


def _contains(root: Path, needle: str) -> list[str]:
    """Files under root whose bytes hold the needle (any case): the erased text must be nowhere."""
    low = needle.lower().encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and low in p.read_bytes().lower()]


@pytest.fixture(scope="module")
def workspace(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished runs (one trained on a data file holding the planted record, one not) and a request log."""
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.serving.request_log import RequestLog, RequestRecord, log_path

    tmp = tmp_path_factory.mktemp("forget")
    rows = make_intent_rows(20)
    with_file = write_jsonl(tmp / "data" / "with.jsonl", [*rows[:30], {"text": PLANTED, "label": "refund"}])
    without_file = write_jsonl(tmp / "data" / "without.jsonl", rows[30:])
    held = make_intent_rows(4, seed=9)
    val = write_jsonl(tmp / "data" / "val.jsonl", held[:6])
    test = write_jsonl(tmp / "data" / "test.jsonl", held[6:])
    ws = tmp / "runs"
    for name, train in (("trained-on-it", with_file), ("not-trained-on-it", without_file)):
        cfg = base_config(tiny_bert, train, ws, name=name, data={"validation": str(val), "test": str(test)},
                          training={"epochs": 1, "max_steps": 1, "threads": 1})
        tuneforge.train(parse_config(cfg), quiet=True)
    log = RequestLog(log_path(ws))
    for text in (GIVEN_BACK["text"], "where is my order #1234", IN_LOG_ONLY, "cancel the lamp order"):
        log.write(RequestRecord("/v1/classify", 200, "k1", "trained-on-it", [text], [{"label": "refund"}]))
    log.close()
    return {"ws": ws, "with": with_file, "without": without_file, "data": tmp / "data", "tmp": tmp}


def test_dry_run_changes_nothing(workspace: dict[str, Path], cli) -> None:
    before = _tree_digest(workspace["ws"], workspace["data"])
    res = cli("forget", "--text", PLANTED, "--workspace", workspace["ws"], "--dry-run", "--json")
    assert res.code == 0, res.err
    receipt = json.loads(res.out)
    assert receipt["dry_run"] and receipt["retrain"] == [str((workspace["ws"] / "trained-on-it").resolve())]
    assert receipt["request_log"]["found"] == 1 and receipt["request_log"]["deleted"] == 0
    assert _tree_digest(workspace["ws"], workspace["data"]) == before  # no receipt file either


def test_forget_erases_everywhere_and_names_the_runs(workspace: dict[str, Path], cli) -> None:
    from tuneforge.serving.request_log import log_path, read_log

    ws = workspace["ws"]
    records = write_jsonl(workspace["tmp"] / "erase.jsonl", [GIVEN_BACK, {"text": IN_LOG_ONLY}])
    train_rows = (ws / "trained-on-it" / "data" / "train.jsonl").read_text().count("\n")
    untouched = _tree_digest(ws / "not-trained-on-it", workspace["without"])
    curated = write_jsonl(workspace["tmp"] / "curated" / "v2.jsonl",  # a dataset version no run names yet
                          [{"text": PLANTED.upper(), "label": "refund"}, {"text": "lamp order please", "label": "x"}])
    res = cli("forget", "--file", records, "--workspace", ws, "--data", curated.parent, "--json")
    assert res.code == 0, res.err
    receipt = json.loads(res.out)
    trained = str((ws / "trained-on-it").resolve())
    assert receipt["retrain"] == [trained]  # named; the run that never saw it is not
    run = next(r for r in receipt["runs"] if r["path"] == trained)
    assert run["rows_deleted"] == {"train": 1} and run["action"] == "retrain"
    assert [d["path"] for d in receipt["datasets"]] == [str(workspace["with"]), str(curated)]
    assert [json.loads(line)["text"] for line in curated.read_text().splitlines()] == ["lamp order please"]
    # Deleted from the data file, the run's prepared split (report updated) and the request log (vacuumed).
    assert _contains(workspace["data"], "jane doe") == []
    assert (ws / "trained-on-it" / "data" / "train.jsonl").read_text().count("\n") == train_rows - 1
    report = json.loads((ws / "trained-on-it" / "data" / "report.json").read_text())
    assert report["rows"]["train"] == train_rows - 1 and report["erasures"][0]["rows_deleted"] == {"train": 1}
    logged = [e["input"][0] for e in read_log(log_path(ws))]
    assert sorted(logged) == ["cancel the lamp order", "where is my order #1234"]
    assert receipt["request_log"]["deleted"] == 2 and receipt["request_log"]["vacuumed"]
    # Nowhere in the workspace any more (reports, model card, log file and its WAL included), nor in the receipt.
    assert _contains(ws, "jane doe") == [] and _contains(ws, "elm street") == []
    receipt_text = Path(receipt["receipt_file"]).read_text()
    assert "jane" not in receipt_text.lower() and "example.com" not in receipt_text
    assert len(receipt["record_hashes"]) == 2 and all(len(h) == 32 for h in receipt["record_hashes"])
    assert _tree_digest(ws / "not-trained-on-it", workspace["without"]) == untouched
    again = json.loads(cli("forget", "--file", records, "--workspace", ws, "--json").out)
    assert again["retrain"] == [] and again["request_log"]["found"] == 0  # nothing left to find


def test_runs_built_on_a_forgotten_run_are_named(tmp_path: Path) -> None:
    """A run whose base model (or teacher, or paraphraser) is a run to retrain must be retrained too."""
    from tuneforge.registry.forget import _Run, propagate

    source = tmp_path / "runs" / "a"
    derived = tmp_path / "runs" / "b"
    for folder, model in ((source, "default"), (derived, str(source / "model"))):
        (folder / "data").mkdir(parents=True)
        write_yaml(folder / "config.yaml", {"model": {"path": model}, "output_dir": str(tmp_path / "runs")})
    runs = [_Run(source.resolve(), None, None, action="retrain"), _Run(derived.resolve(), None, None)]
    propagate(runs)
    assert runs[1].action == "retrain" and "a" in runs[1].reason


def test_nothing_to_forget_is_a_user_error(tmp_path: Path, cli) -> None:
    from conftest import assert_user_error

    assert_user_error(cli("forget", "--workspace", tmp_path), "nothing to forget", fix="--text")
