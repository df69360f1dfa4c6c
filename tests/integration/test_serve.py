"""`tuneforge serve`: a real uvicorn server on 127.0.0.1 over tiny trained runs, driven by the official openai client.

One session-scoped workspace: a classification run, a NER run, four LoRA classification runs over one base (served
with --max-adapters 2), a full SFT run and a LoRA SFT run. Every answer is checked against the same run used alone
through `load_run` (greedy text, probabilities, vectors)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import base_config, make_intent_rows, make_ner_rows, write_jsonl
from serve_harness import Server, openai, running_server

LORAS = ["lora-a", "lora-b", "lora-c", "lora-d"]
CHAT_ROWS = [{"prompt": f"{w} order {i}", "completion": f"Your {w} is done."}
             for i, w in enumerate(["refund", "track", "cancel"] * 20)]


def _train(cfg: dict[str, Any]) -> None:
    import tuneforge
    from tuneforge.config import parse_config

    tuneforge.train(parse_config(cfg), quiet=True)


@pytest.fixture(scope="session")
def workspace(tiny_bert: Path, tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("serve")
    runs = tmp / "runs"
    intents = write_jsonl(tmp / "intents.jsonl", make_intent_rows(20))
    ner = write_jsonl(tmp / "ner.jsonl", make_ner_rows(40))
    chat = write_jsonl(tmp / "chat.jsonl", CHAT_ROWS)
    short = {"epochs": 1, "max_steps": 2, "threads": 1}
    _train(base_config(tiny_bert, intents, runs, name="intent", training=short))
    _train(base_config(tiny_bert, ner, runs, name="ner", task={"name": "token_classification"}, training=short))
    for seed, name in enumerate(LORAS):  # different seeds: different heads and adapters on one base
        _train(base_config(tiny_bert, intents, runs, name=name, method={"name": "lora", "r": 4},
                           training={**short, "seed": seed + 10, "learning_rate": 5e-2}))
    for name, method in (("chat", "full"), ("chat-lora", "lora")):
        cfg = base_config(tiny_causal, chat, runs, name=name, task={"name": "sft", "max_new_tokens": 8},
                          method={"name": method}, training={"epochs": 1, "max_steps": 6, "learning_rate": 5e-3,
                                                             "batch_size": 8, "threads": 1})
        cfg["data"]["max_length"] = 64
        _train(cfg)
    return runs


@pytest.fixture(scope="session")
def server(workspace: Path) -> Iterator[Server]:
    from tuneforge.serving.app import ServeSettings
    from tuneforge.serving.engine import Limits

    settings = ServeSettings(workspace=workspace, max_adapters=2, max_batch=8, batch_window_ms=40,
                             rate_limit=100_000, max_body_bytes=64 * 1024,
                             limits=Limits(max_new_tokens=64, max_prompt_tokens=200, max_inputs=32))
    with running_server(settings) as running:
        yield running


@pytest.fixture(scope="session")
def alone(workspace: Path) -> Any:
    """Each run loaded on its own in this process (the reference every served answer must equal)."""
    from tuneforge.registry.loaded_run import load_run

    cache: dict[str, Any] = {}
    return lambda name: cache.setdefault(name, load_run(workspace / name))


def _error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


# ---- the OpenAI routes --------------------------------------------------------------------------------------


def test_models_list_every_finished_run_and_default(server: Server) -> None:
    ids = {m.id for m in server.client().models.list().data}
    assert ids == {"intent", "ner", *LORAS, "chat", "chat-lora", "default"}


@pytest.mark.parametrize("model", ["chat", "chat-lora"])
def test_chat_greedy_equals_the_run_alone(server: Server, alone: Any, model: str) -> None:
    messages = [{"role": "user", "content": "refund order 3"}]
    resp = server.client().chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    assert resp.object == "chat.completion" and resp.model == model
    assert resp.choices[0].message.content == alone(model).generate(messages, max_new_tokens=8)[0]
    assert resp.usage.prompt_tokens > 3 and resp.usage.total_tokens == resp.usage.prompt_tokens + \
        resp.usage.completion_tokens
    parts = server.client().chat.completions.create(  # content as text parts, newer max_completion_tokens
        model=model, max_completion_tokens=8,
        messages=[{"role": "user", "content": [{"type": "text", "text": "refund "},
                                               {"type": "text", "text": "order 3"}]}])
    assert parts.choices[0].message.content == resp.choices[0].message.content


def test_chat_sampling_with_a_seed_equals_the_run_alone(server: Server, alone: Any) -> None:
    messages = [{"role": "user", "content": "track order 5"}]
    resp = server.client().chat.completions.create(model="chat", messages=messages, max_tokens=8, temperature=1.0,
                                                   top_p=0.9, seed=7, n=2)
    expected = alone("chat").generate(messages, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7, n=2)
    assert [c.message.content for c in resp.choices] == expected


def test_chat_stream_is_openai_sse_and_same_text(server: Server) -> None:
    messages = [{"role": "user", "content": "cancel order 9"}]
    client = server.client()
    whole = client.chat.completions.create(model="chat", messages=messages, max_tokens=10).choices[0].message.content
    chunks = list(client.chat.completions.create(model="chat", messages=messages, max_tokens=10, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason in ("stop",
                                                                                                       "length")
    raw = server.post("/v1/chat/completions", {"model": "chat", "messages": messages, "max_tokens": 4,
                                               "stream": True})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = raw.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: {") for e in events[:-2])


def test_stop_strings_cut_streamed_and_whole_replies_alike(server: Server, alone: Any) -> None:
    messages = [{"role": "user", "content": "refund order 3"}]
    whole = alone("chat").generate(messages, max_new_tokens=10)[0]
    stop = whole.split()[1] if len(whole.split()) > 1 else whole[-2:]  # a word the reply really contains
    client = server.client()
    cut = client.chat.completions.create(model="chat", messages=messages, max_tokens=10, stop=[stop])
    streamed = client.chat.completions.create(model="chat", messages=messages, max_tokens=10, stop=stop, stream=True)
    text = cut.choices[0].message.content
    assert stop not in text and whole.startswith(text.strip())
    assert "".join(c.choices[0].delta.content or "" for c in streamed).strip() == text


def test_completions_answer_the_prompt_as_one_user_turn(server: Server, alone: Any) -> None:
    resp = server.client().completions.create(model="chat", prompt=["refund order 1", "track order 2"],
                                              max_tokens=6)
    assert resp.object == "text_completion" and [c.index for c in resp.choices] == [0, 1]
    for choice, prompt in zip(resp.choices, ["refund order 1", "track order 2"], strict=True):
        assert choice.text == alone("chat").generate([{"role": "user", "content": prompt}], max_new_tokens=6)[0]


def test_concurrent_greedy_requests_batch_and_answer_as_alone(server: Server, alone: Any) -> None:
    prompts = [f"{w} order {i}" for i, w in enumerate(["refund", "track me now please", "cancel", "hi"] * 2)]

    def ask(i: int) -> str:
        model = ["chat", "chat-lora"][i % 2]
        return server.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompts[i]}], max_tokens=8).choices[0].message.content

    def too_long() -> str:  # batched with the others, refused alone
        with pytest.raises(openai.BadRequestError, match="at most 200"):
            server.client().chat.completions.create(model="chat", max_tokens=8,
                                                    messages=[{"role": "user", "content": "refund " * 300}])
        return "refused"

    before = _batch_histogram(server)
    with ThreadPoolExecutor(9) as pool:
        refused = pool.submit(too_long)
        got = list(pool.map(ask, range(len(prompts))))
        assert refused.result() == "refused"
    for i, text in enumerate(got):
        assert text == alone(["chat", "chat-lora"][i % 2]).generate(
            [{"role": "user", "content": prompts[i]}], max_new_tokens=8)[0]
    after = _batch_histogram(server)
    batches = after["count"] - before["count"]
    assert batches < len(prompts)  # some requests ran together


def _batch_histogram(server: Server) -> dict[str, float]:
    text = server.get("/metrics").text
    return {"count": float(next(line.split()[-1] for line in text.splitlines()
                                if line.startswith("tuneforge_batch_size_count")))}


def test_generate_batch_equals_generate_alone(alone: Any) -> None:
    run = alone("chat")
    talks = [[{"role": "user", "content": p}] for p in ("refund order 1", "a much longer question about order 2",
                                                         "hi")]
    assert run.generate_batch(talks, max_new_tokens=10) == [run.generate(t, max_new_tokens=10)[0] for t in talks]


def test_embeddings_default_and_encoder_runs(server: Server, alone: Any) -> None:
    import numpy as np

    from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings
    from tuneforge.models.loading import default_model_path, load_tokenizer

    client = server.client()
    texts = ["where is my parcel", "refund please"]
    got = client.embeddings.create(model="default", input=texts)  # the client asks for base64 and decodes it
    vectors = np.array([d.embedding for d in got.data])
    path = str(default_model_path())
    expected = sentence_embeddings(load_encoder(path), load_tokenizer(path), texts, max_length=256)
    assert vectors.shape == (2, 384) and np.allclose(vectors, expected, atol=1e-5)
    assert got.usage.prompt_tokens > 4
    floats = client.embeddings.create(model="intent", input="where is my parcel", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, alone("intent").embed(["where is my parcel"])[0], atol=1e-5)
    _error(server.post("/v1/embeddings", {"model": "chat", "input": "x"}), 400, "wrong_model_kind")


def test_classify_labels_and_entities(server: Server, alone: Any) -> None:
    resp = server.post("/v1/classify", {"model": "intent", "input": ["refund order 3", "where is order 9"],
                                        "top_k": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = alone("intent").predict(["refund order 3", "where is order 9"])
    for row, exp in zip(body["data"], expected, strict=True):
        assert row["label"] == exp["label"] and row["score"] == exp["score"]
        assert [t["label"] for t in row["top"]] == list(exp["top"])[:2]
        assert row["top"][0]["score"] >= row["top"][1]["score"]
    ner = server.post("/v1/classify", {"model": "ner", "input": [["Alice", "flew", "to", "Oslo"]]}).json()
    exp = alone("ner").predict([["Alice", "flew", "to", "Oslo"]])[0]
    assert ner["data"][0]["tags"] == exp["tags"] and ner["data"][0]["entities"] == exp["entities"]
    assert "/v1/classify" in server.get("/openapi.json", key="").json()["paths"]


def test_adapters_share_one_base_lru_keeps_two_and_each_answers_as_alone(server: Server, alone: Any) -> None:
    pool = server.app.state.serving.engine.pool
    texts = ["refund the lamp", "where is order 12", "cancel it"]
    for name in [*LORAS, *reversed(LORAS), *LORAS]:
        rows = server.post("/v1/classify", {"model": name, "input": texts}).json()["data"]
        expected = alone(name).predict(texts)
        assert [{t["label"]: t["score"] for t in r["top"]} for r in rows] == [e["top"] for e in expected], name
        assert len(pool.resident_adapters) <= 2
    resident = [n for n in pool.resident_adapters if n in LORAS]
    assert resident == LORAS[-2:]  # the two most recently used
    assert pool.shared_bases == 1  # both on one base model in memory
    metrics = server.get("/metrics").text
    assert "tuneforge_resident_adapters 2" in metrics and 'route="/v1/classify",status="200"' in metrics
    assert len({json.dumps(alone(n).predict(texts)) for n in LORAS}) == 4  # the four runs really differ


# ---- keys, limits, errors ------------------------------------------------------------------------------------


def test_every_route_but_health_needs_a_key(server: Server) -> None:
    assert server.get("/health", key="").status_code == 200
    for path in ("/v1/models", "/metrics"):
        _error(server.get(path, key=""), 401, "invalid_api_key")
    _error(server.post("/v1/classify", {"model": "intent", "input": "x"}, key="tf-nope"), 401, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        server.client("tf-wrong").models.list()


def test_keys_cli_create_list_revoke(server: Server, cli) -> None:
    res = cli("keys", "create", "--name", "ci-bot", "--workspace", server.workspace)
    assert res.code == 0, res.err
    secret = res.out.strip().splitlines()[-1]
    assert server.get("/v1/models", key=secret).status_code == 200
    listed = cli("keys", "list", "--workspace", server.workspace).out
    assert "ci-bot" in listed and secret not in listed
    stored = (server.workspace / ".tuneforge" / "serve_keys.sqlite").read_bytes()
    assert secret.encode() not in stored  # only a hash is kept
    assert cli("keys", "revoke", "ci-bot", "--workspace", server.workspace).code == 0
    _error(server.get("/v1/models", key=secret), 401, "invalid_api_key")
    bad = cli("keys", "create", "--name", "x", "--scope", "root", "--workspace", server.workspace)
    assert bad.code == 2 and "unknown scope" in bad.err


def test_rate_limit_answers_429_with_retry_after(server: Server) -> None:
    from tuneforge.serving.keys import KeyStore, store_path

    _key, secret = KeyStore(store_path(server.workspace)).create("slow", rate_limit=2)
    statuses = [server.get("/v1/models", key=secret) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    _error(statuses[2], 429, "rate_limit_exceeded")
    assert int(statuses[2].headers["retry-after"]) >= 1
    assert server.get("/v1/models").status_code == 200  # other keys are not limited by it


def test_body_and_token_limits(server: Server) -> None:
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 70_000}]}
    _error(server.post("/v1/chat/completions", big), 413, "request_too_large")
    from tuneforge.serving.request_log import log_path, read_log

    assert read_log(log_path(server.workspace), 1)[0]["status"] == 413  # logged, though refused before auth
    err = _error(server.post("/v1/chat/completions", {"model": "chat", "max_tokens": 5000,
                                                      "messages": [{"role": "user", "content": "hi"}]}), 400)
    assert err["param"] == "max_tokens" and "64" in err["message"]
    long = {"model": "chat", "messages": [{"role": "user", "content": "refund " * 300}]}
    assert "at most 200" in _error(server.post("/v1/chat/completions", long), 400)["message"]
    assert "at most 200" in _error(server.post("/v1/chat/completions", {**long, "stream": True}), 400)["message"]
    _error(server.post("/v1/classify", {"model": "intent", "input": ["a"] * 33}), 400)


def test_bad_requests_are_json_errors(server: Server) -> None:
    raw = server.post("/v1/chat/completions", content=b'{"model": "chat", "messages": [', key=None,
                      headers={"Content-Type": "application/json"})
    _error(raw, 400, "invalid_json")
    err = _error(server.post("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user",
                                                                                     "content": "hi"}]}),
                 404, "model_not_found")
    assert "nope" in err["message"]
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    err = _error(server.post("/v1/chat/completions", {"model": "chat", "temperature": "hot",
                                                      "messages": [{"role": "user", "content": "hi"}]}), 400)
    assert err["param"] == "temperature"
    _error(server.post("/v1/chat/completions", {"model": "intent", "messages": [{"role": "user", "content": "x"}]}),
           400, "wrong_model_kind")
    _error(server.post("/v1/classify", {"model": "chat", "input": "x"}), 400, "wrong_model_kind")
    _error(server.post("/v1/classify", {"model": "intent", "input": 5}), 400)
    _error(server.get("/v1/nothing-here"), 404)


def test_request_log_commits_each_request_with_pii_redacted(server: Server) -> None:
    from tuneforge.serving.request_log import log_path, read_log

    text = "refund order 4, mail jane.doe@example.com or call +44 20 7946 0958"
    resp = server.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": text}],
                                                   max_tokens=4)
    entry = next(e for e in read_log(log_path(server.workspace)) if e["route"] == "/v1/chat/completions"
                 and e["status"] == 200)
    logged = json.dumps(entry["input"])
    assert "jane.doe" not in logged and "7946" not in logged and "[EMAIL]" in logged and "[PHONE]" in logged
    assert entry["model"] == "chat" and entry["key_id"] and entry["latency_ms"] > 0
    assert entry["prompt_tokens"] == resp.usage.prompt_tokens and entry["output"] == [resp.choices[0].message.content]
    server.post("/v1/classify", {"model": "intent", "input": "refund please"})
    cls = read_log(log_path(server.workspace), 1)[0]
    assert cls["route"] == "/v1/classify" and cls["scores"] and cls["output"][0]["label"]
    server.get("/v1/models", key="")
    assert read_log(log_path(server.workspace), 1)[0]["status"] == 401  # refused requests are logged too


def test_vllm_dry_run_prints_the_command(server: Server, cli) -> None:
    res = cli("serve", "chat-lora", "--engine", "vllm", "--dry-run", "--workspace", server.workspace, "--port", "9001")
    assert res.code == 0, res.err
    words = res.out.split()
    assert words[:2] == ["vllm", "serve"] and "--enable-lora" in words
    assert f"chat-lora={server.workspace / 'chat-lora' / 'model'}" in words and words[-2:] == ["--port", "9001"]
    refused = cli("serve", "--engine", "vllm", "--dry-run", "--workspace", server.workspace)
    assert refused.code == 2 and "one base per process" in refused.err  # a full run next to adapters


# ---- the OpenAPI schema, fuzzed (bounded) -------------------------------------------------------------------


def test_no_request_generated_from_the_openapi_schema_gets_a_5xx(server: Server) -> None:
    """schemathesis draws valid and invalid requests for every operation (a few each); none may crash the server."""
    schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    auth = {"Authorization": f"Bearer {server.key}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/classify", "/v1/embeddings"}
    for operation in operations:
        # GET routes take no parameters, so there is no invalid request to draw for them
        post = operation.method.upper() == "POST"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if post else (GenerationMode.POSITIVE,):
            @settings(max_examples=6, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                response = case.call(base_url=server.url, headers=auth, timeout=60)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.path} {case.body!r:.200}: {response.text[:200]}")

            call()
    assert not failures, "\n".join(failures)


def test_a_run_that_finishes_after_start_up_is_served(server: Server, alone: Any) -> None:
    import shutil

    late = server.workspace / "intent-late"
    shutil.copytree(server.workspace / "intent", late)  # as a training job finishing now would leave it
    try:
        time.sleep(1.1)  # the workspace is scanned at most once a second
        resp = server.post("/v1/classify", {"model": "intent-late", "input": "refund order 3"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"][0]["score"] == alone("intent").predict(["refund order 3"])[0]["score"]
        assert "intent-late" in {m.id for m in server.client().models.list().data}
    finally:
        shutil.rmtree(late)
