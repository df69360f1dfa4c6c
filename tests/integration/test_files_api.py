"""The files API (`/v1/files`) and the base-model listing, driven by the official openai client against uvicorn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import base_config
from serve_harness import Server, admin_key, openai, running_server

CHAT = {"messages": [{"role": "system", "content": "You help with orders."},
                     {"role": "user", "content": "Where is my order?"},
                     {"role": "assistant", "content": "It ships tomorrow."}]}
DPO = {"input": {"messages": [{"role": "user", "content": "Say hi"}]},
       "preferred_output": [{"role": "assistant", "content": "Hello! How can I help?"}],
       "non_preferred_output": [{"role": "assistant", "content": "What."}]}


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tuneforge.serving.app import ServeSettings

    workspace = tmp_path_factory.mktemp("files") / "runs"
    workspace.mkdir()
    with running_server(ServeSettings(workspace=workspace, rate_limit=100_000)) as running:
        yield running


def _upload(server: Server, name: str, data: bytes) -> Any:
    return server.client().files.create(file=(name, data), purpose="fine-tune")


def test_chat_file_processed_retrieved_downloaded_deleted(server: Server) -> None:
    client, data = server.client(), jsonl([CHAT] * 4)
    created = _upload(server, "orders.jsonl", data)
    assert (created.object, created.status, created.purpose, created.bytes) == ("file", "processed", "fine-tune",
                                                                                  len(data))
    assert created.filename == "orders.jsonl" and created.id.startswith("file-")
    assert created.status_details is None
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == data
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError, match=created.id):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)


def test_dpo_file_processed_and_loaded_as_preference_rows(server: Server, tmp_path: Path) -> None:
    from tuneforge.config import parse_config
    from tuneforge.data.prepare import load_examples
    from tuneforge.serving.file_store import FileStore
    from tuneforge.tasks import TASKS

    created = _upload(server, "prefs.jsonl", jsonl([DPO, DPO]))
    assert created.status == "processed" and created.model_extra["task"] == "preference"
    path = FileStore(server.workspace).path_of(created.id)  # what a preference job trains on
    cfg = parse_config(base_config(tmp_path / "model", path, tmp_path / "runs", task={"name": "preference"}))
    task = TASKS.get("preference")(cfg.task)
    rows = load_examples([str(path)], cfg, task, {})
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows] == [  # _src, _rid: bookkeeping
        {"prompt": [{"role": "user", "content": "Say hi"}], "chosen": "Hello! How can I help?",
         "rejected": "What."}] * 2


def test_bad_file_names_each_bad_line(server: Server) -> None:
    rows = [CHAT, CHAT, "{this is not json", CHAT, {"prompt": "hello"}, CHAT]
    created = _upload(server, "bad.jsonl", jsonl(rows))
    assert created.status == "error"
    details = created.status_details
    assert "line 3: malformed JSON" in details and "line 5:" in details, details
    assert "line 1:" not in details and "line 4:" not in details and "Fix:" in details
    assert server.client().files.retrieve(created.id).status_details == details


def test_list_pagination(server: Server) -> None:
    client = server.client()
    mine = [_upload(server, f"page{i}.jsonl", jsonl([CHAT])).id for i in range(5)]
    every = client.files.list(limit=100)
    assert not every.has_more and [f.id for f in every.data][:5] == mine[::-1]  # newest first
    first = client.files.list(limit=2)
    assert first.has_more and [f.id for f in first.data] == mine[::-1][:2]
    second = client.files.list(limit=2, after=first.data[-1].id)
    assert [f.id for f in second.data] == mine[::-1][2:4]
    walked = [f.id for f in client.files.list(limit=2)]  # the client's auto-paging follows after/has_more
    assert walked == [f.id for f in every.data]
    raw = server.get("/v1/files?limit=1").json()
    assert set(raw) == {"object", "data", "first_id", "last_id", "has_more"} and raw["has_more"] is True
    assert server.get("/v1/files?after=file-nope").status_code == 404
    assert server.get("/v1/files?limit=0").status_code == 400


def test_filename_never_becomes_a_path(server: Server) -> None:
    root = server.workspace.parent
    before = {p for p in root.parent.rglob("*")}
    created = _upload(server, "../../x", jsonl([CHAT]))
    assert created.status == "processed" and created.filename == "../../x"
    new = {p for p in root.parent.rglob("*")} - before
    store = server.workspace / ".tuneforge"
    assert new and all(p.is_relative_to(store) for p in new), new
    assert not (root / "x").exists() and not (root.parent / "x").exists()
    assert (store / "files" / f"{created.id}.jsonl").read_bytes() == jsonl([CHAT])


def test_bad_uploads_are_400_naming_the_field(server: Server) -> None:
    import httpx2 as httpx

    auth = {"Authorization": f"Bearer {server.key}"}
    resp = httpx.post(f"{server.url}/v1/files", headers=auth, files={"file": ("a.jsonl", jsonl([CHAT]))},
                      data={"purpose": "assistants"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "purpose", resp.text
    resp = httpx.post(f"{server.url}/v1/files", headers=auth, files={"file": ("a.jsonl", jsonl([CHAT]))})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "purpose"
    resp = httpx.post(f"{server.url}/v1/files", headers=auth, data={"purpose": "fine-tune"}, files={"x": ("a", b"")})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "file"
    resp = server.post("/v1/files", {"purpose": "fine-tune"})  # JSON, not multipart
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "file"


def test_every_files_route_needs_a_jobs_key(server: Server) -> None:
    file_id = _upload(server, "scoped.jsonl", jsonl([CHAT])).id
    weak = admin_key(server.workspace, "reader", "inference")
    jobs = admin_key(server.workspace, "trainer", "jobs")
    calls = [lambda c: c.files.create(file=("a.jsonl", jsonl([CHAT])), purpose="fine-tune"),
             lambda c: c.files.list(), lambda c: c.files.retrieve(file_id),
             lambda c: c.files.content(file_id), lambda c: c.files.delete(file_id)]
    for call in calls:
        with pytest.raises(openai.PermissionDeniedError, match=r"this route needs 'jobs'"):
            call(server.client(weak))
    for path in ("/v1/files", f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        assert server.get(path, key="").status_code == 401
    assert server.post("/v1/files", key="").status_code == 401
    assert server.client(jobs).files.retrieve(file_id).id == file_id  # jobs scope is enough
    for call in calls:  # the last call deletes the file, so every route ran with the jobs key
        call(server.client(jobs))


def test_models_list_catalogue_bases(server: Server, tmp_path: Path) -> None:
    from tuneforge.registry.base_models import add, remove

    gguf = tmp_path / "small.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 20)
    add(server.workspace, "small", gguf)
    try:
        cards = {m.id: m for m in server.client().models.list().data}
        assert cards["small"].owned_by == "tuneforge-base" and cards["small"].model_extra["servable"] is False
        assert cards["default"].owned_by == "tuneforge" and list(cards).count("default") == 1
    finally:
        remove(server.workspace, "small")
    assert "small" not in {m.id for m in server.client().models.list().data}


def test_uploads_have_their_own_size_limit(tmp_path: Path) -> None:
    """Training files are larger than API requests: POST /v1/files takes up to max_upload_bytes, every other route
    keeps max_body_bytes (413 past either). With CORS on, browsers may DELETE files too."""
    from tuneforge.serving.app import ServeSettings

    workspace = tmp_path / "runs"
    workspace.mkdir()
    big = jsonl([CHAT] * 1500)  # ~250 KB
    assert 64 * 1024 < len(big) < 1 << 20
    settings = ServeSettings(workspace=workspace, max_body_bytes=64 * 1024, max_upload_bytes=1 << 20,
                             cors_origins=("http://ui.example",))
    with running_server(settings) as server:
        import httpx2 as httpx

        preflight = httpx.options(f"{server.url}/v1/files/file-x", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "DELETE"})
        assert "DELETE" in preflight.headers.get("access-control-allow-methods", ""), preflight.headers
        assert _upload(server, "big.jsonl", big).status == "processed"
        with pytest.raises(openai.APIStatusError) as err:
            _upload(server, "huge.jsonl", big * 5)
        assert err.value.status_code == 413
        resp = server.post("/v1/embeddings", {"model": "default", "input": "x" * len(big)})
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
