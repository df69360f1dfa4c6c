"""FileStore (serving/file_store.py) and whole-file validation (data/validate.py), without a server."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tuneforge.serving.file_store import FileNotUsable, FileStore, FileStoreError, UnknownFile, clean_filename

CHAT = {"messages": [{"role": "user", "content": "Where is my order?"},
                     {"role": "assistant", "content": "It ships tomorrow."}]}
DPO = {"input": {"messages": [{"role": "user", "content": "Say hi"}]},
       "preferred_output": [{"role": "assistant", "content": "Hello!"}],
       "non_preferred_output": [{"role": "assistant", "content": "Go away."}]}


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def test_chat_file_is_processed_and_stored_under_its_id(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = jsonl([CHAT] * 3)
    obj = store.create("train.jsonl", "fine-tune", data)
    assert obj.status == "processed" and obj.status_details is None
    assert (obj.task, obj.format, obj.records, obj.bytes) == ("sft", "jsonl", 3, len(data))
    assert obj.id.startswith("file-") and len(obj.id) == 5 + 24
    path = store.path_of(obj.id)
    assert path.parent == tmp_path / ".tuneforge" / "files" and path.name.startswith(obj.id)
    assert store.content(obj.id) == data
    assert store.get(obj.id) == obj and store.is_usable(obj.id)
    assert store.require_usable(obj.id, "training_file") == obj


def test_bad_lines_are_all_named_with_their_fixes(tmp_path: Path) -> None:
    rows = [CHAT, CHAT, '{"messages": [oops', CHAT, {"prompt_x": "no messages here"}, CHAT]
    obj = FileStore(tmp_path).create("bad.jsonl", "fine-tune", jsonl(rows))
    assert obj.status == "error"
    details = obj.status_details or ""
    assert "line 3: malformed JSON" in details and "line 5: " in details, details
    assert "Fix:" in details and "line 1" not in details and "line 6" not in details
    assert str(tmp_path) not in details  # the server's paths are not shown to clients
    with pytest.raises(FileNotUsable, match=r"status 'error'") as err:
        FileStore(tmp_path).require_usable(obj.id, "training_file")
    assert err.value.param == "training_file" and not FileStore(tmp_path).is_usable(obj.id)


def test_empty_and_wrong_purpose(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    empty = store.create("empty.jsonl", "fine-tune", b"")
    assert empty.status == "error" and "no records" in (empty.status_details or "")
    with pytest.raises(FileStoreError, match="purpose 'assistants'") as err:
        store.create("x.jsonl", "assistants", jsonl([CHAT]))
    assert err.value.param == "purpose"
    assert store.list()[0] == [empty]  # the refused upload left nothing behind
    assert sorted(p.name for p in store.root.iterdir()) == [f"{empty.id}.jsonl"]


def test_filename_is_metadata_only(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    store = FileStore(workspace)
    before = set(tmp_path.rglob("*"))
    obj = store.create("../../x", "fine-tune", jsonl([CHAT]))
    obj2 = store.create("/etc/passwd\x00\x1b[31m.csv", "fine-tune", b"text,label\na,b\n")
    new = set(tmp_path.rglob("*")) - before
    assert all(p.is_relative_to(workspace / ".tuneforge") for p in new), new
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert obj.filename == "../../x" and store.path_of(obj.id).name == f"{obj.id}.jsonl"
    assert obj2.filename == "/etc/passwd[31m.csv" and store.path_of(obj2.id).name == f"{obj2.id}.csv"
    assert obj2.format == "csv" and obj2.task == "classification"
    zipped = store.create("chats.v2.jsonl.gz", "fine-tune", gzip.compress(jsonl([CHAT, CHAT])))
    assert (zipped.status, zipped.records) == ("processed", 2)
    assert store.path_of(zipped.id).name == f"{zipped.id}.jsonl.gz"
    assert len(clean_filename("a" * 1000)) == 255 and clean_filename("\x00\x07") == "upload"


def test_list_pages_newest_first_and_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    ids = [store.create(f"f{i}.jsonl", "fine-tune", jsonl([CHAT])).id for i in range(5)]
    page, more = store.list(limit=2)
    assert [f.id for f in page] == ids[::-1][:2] and more
    page2, more2 = store.list(after=page[-1].id, limit=2)
    page3, more3 = store.list(after=page2[-1].id, limit=2)
    assert [f.id for f in page2 + page3] == ids[::-1][2:] and more2 and not more3
    assert [f.id for f in store.list(order="asc", limit=10)[0]] == ids
    with pytest.raises(UnknownFile) as err:
        store.list(after="file-nope")
    assert err.value.param == "after"
    store.delete(ids[0])
    with pytest.raises(UnknownFile, match=ids[0]):
        store.get(ids[0])
    with pytest.raises(UnknownFile, match="POST /v1/files"):
        store.path_of(ids[0])
    with pytest.raises(UnknownFile):
        store.delete(ids[0])
    assert not any(p.name.startswith(ids[0]) for p in store.root.iterdir())
    rows = sqlite3.connect(tmp_path / ".tuneforge" / "files.sqlite").execute("SELECT id FROM files").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids[1:])


def test_openai_dpo_file_loads_as_preference_pairs(tmp_path: Path) -> None:
    """The data layer reads OpenAI DPO lines as the preference task's examples (so a preference run trains on the
    uploaded file as it is), and names a bad line."""
    from tuneforge.config import ColumnsConfig
    from tuneforge.data.sources import infer_task, read_records
    from tuneforge.tasks import TASKS

    store = FileStore(tmp_path)
    bad = {**DPO, "preferred_output": [{"role": "user", "content": "x"}]}
    obj = store.create("prefs.jsonl", "fine-tune", jsonl([DPO, bad]))
    assert obj.task == "preference" and obj.status == "error"
    assert "line 2: 'preferred_output[0]' has role 'user'" in (obj.status_details or "")
    good = store.create("prefs.jsonl", "fine-tune", jsonl([DPO]))
    assert good.status == "processed"
    task = TASKS.get("preference")(TASKS.get("preference").Params(name="preference"))
    (raw, _, line), = read_records(str(store.path_of(good.id)), "auto", "preference")
    assert infer_task("jsonl", raw) == "preference" and line == 1
    assert task.parse(raw, ColumnsConfig(), None) == {
        "prompt": [{"role": "user", "content": "Say hi"}], "chosen": "Hello!", "rejected": "Go away."}


def test_other_tuneforge_formats(tmp_path: Path) -> None:
    """CSV, CoNLL and prompt/completion files are validated by their own readers and tasks; a reader's error names
    the line (and the upload's name, not the server's path)."""
    store = FileStore(tmp_path)
    conll = store.create("ner.conll", "fine-tune", b"Paris\tB-LOC\nis\tO\n\nBob\tB-PER\n")
    assert (conll.status, conll.task, conll.records) == ("processed", "token_classification", 2)
    pc = store.create("pc.jsonl", "fine-tune", jsonl([{"prompt": "2+2?", "completion": "4"}]))
    assert (pc.status, pc.task) == ("processed", "sft")
    bad_csv = store.create("intents.csv", "fine-tune", b'text,label\nhello,greet\n"a",b,c\n')
    assert bad_csv.status == "error" and bad_csv.task == "classification"
    assert (bad_csv.status_details or "").startswith("line 3: ") and "more cells" in (bad_csv.status_details or "")
    assert str(tmp_path) not in (bad_csv.status_details or "")


def test_many_bad_lines_are_capped_and_counted(tmp_path: Path) -> None:
    obj = FileStore(tmp_path).create("bad.jsonl", "fine-tune", jsonl([CHAT] + ["nope"] * 25))
    details = obj.status_details or ""
    assert details.count("malformed JSON") == 20 and "line 21:" in details and "line 22:" not in details
    assert details.endswith("and 5 more invalid line(s)") and obj.records == 26
