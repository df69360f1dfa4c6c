"""Serving parts that need no model: keys, rate limiter, request log, metrics text, the vLLM command."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi", reason="pip install tuneforge[serve]")


def test_keys_are_stored_as_salted_hashes_and_revocable(tmp_path: Path) -> None:
    from tuneforge.serving.keys import KeyStore, KeyStoreError

    store = KeyStore(tmp_path / "k.sqlite")
    key, secret = store.create("app", "jobs", rate_limit=5)
    assert secret.startswith(f"tf-{key.key_id}-") and len(secret) > 40
    assert store.verify(secret) == key
    assert store.verify(secret + "x") is None and store.verify("") is None
    raw = sqlite3.connect(tmp_path / "k.sqlite").execute("SELECT hash FROM keys").fetchone()[0]
    assert raw != hashlib.sha256(secret.encode()).hexdigest()  # keyed by the store's salt, not a bare hash
    assert secret not in (tmp_path / "k.sqlite").read_bytes().decode(errors="ignore")
    store.revoke(key.key_id)
    assert store.verify(secret) is None and store.list()[0].revoked
    with pytest.raises(KeyStoreError, match="no active key"):
        store.revoke(key.key_id)
    with pytest.raises(KeyStoreError, match="unknown scope"):
        store.create("x", "root")


def test_scopes_nest_inference_jobs_admin() -> None:
    from tuneforge.serving.keys import allows

    assert allows("admin", "jobs") and allows("jobs", "inference") and allows("inference", "inference")
    assert not allows("inference", "jobs") and not allows("jobs", "admin") and not allows("revoked?", "inference")
    with pytest.raises(ValueError, match="unknown scope"):
        allows("admin", "root")


def test_rate_limiter_allows_the_burst_then_says_when() -> None:
    from tuneforge.serving.app import RateLimiter

    limiter = RateLimiter()
    assert [limiter.check("a", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("a", 3)
    assert 19 < wait <= 20  # 3 per minute: one every 20 s
    assert limiter.check("b", 3) == 0.0  # per key


def test_request_log_redacts_keeps_metadata_only_and_purges(tmp_path: Path) -> None:
    from tuneforge.serving.request_log import RequestLog, RequestRecord, read_log

    record = RequestRecord("/v1/classify", 200, "k1", "intent", ["mail me at a.b@example.org"], [{"label": "x"}],
                           [{"x": 0.9}], 12.5, 7)
    log = RequestLog(tmp_path / "a.sqlite")
    log.write(record)
    entry = read_log(tmp_path / "a.sqlite")[0]
    assert entry["input"] == ["mail me at [EMAIL]"] and entry["scores"] == [{"x": 0.9}]
    assert entry["latency_ms"] == 12.5 and entry["prompt_tokens"] == 7 and entry["key_id"] == "k1"
    assert sqlite3.connect(tmp_path / "a.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    meta_only = RequestLog(tmp_path / "b.sqlite", log_inputs=False)
    meta_only.write(record)
    entry = read_log(tmp_path / "b.sqlite")[0]
    assert entry["input"] is None and entry["output"] is None and entry["model"] == "intent"

    raw = RequestLog(tmp_path / "c.sqlite", redact_pii=False)
    raw.write(record)
    assert read_log(tmp_path / "c.sqlite")[0]["input"] == ["mail me at a.b@example.org"]

    kept = RequestLog(tmp_path / "d.sqlite", retention_days=1)
    kept.write(RequestRecord("/v1/models", 200, time=time.time() - 3 * 86400))
    kept.write(RequestRecord("/v1/models", 200))
    assert kept.purge() == 1 and len(read_log(tmp_path / "d.sqlite")) == 1


def test_metrics_text_is_prometheus_format() -> None:
    from tuneforge.serving.metrics import Metrics

    metrics = Metrics(resident_adapters=lambda: 3)
    metrics.observe_request("/v1/classify", 200, 0.03)
    metrics.observe_request("/v1/classify", 200, 2.0)
    metrics.observe_batch(4)
    text = metrics.render()
    assert 'tuneforge_requests_total{route="/v1/classify",status="200"} 2' in text
    assert 'tuneforge_request_latency_seconds_bucket{route="/v1/classify",le="0.05"} 1' in text
    assert 'tuneforge_request_latency_seconds_bucket{route="/v1/classify",le="+Inf"} 2' in text
    assert 'tuneforge_batch_size_bucket{le="2"} 0' in text and 'tuneforge_batch_size_bucket{le="4"} 1' in text
    assert "tuneforge_resident_adapters 3" in text


def _run(name: str, method: str = "lora", adapter: bool = True, base: str = "/m/base", r: int = 8,
         generative: bool = True) -> SimpleNamespace:
    return SimpleNamespace(name=name, generative=generative, is_adapter=adapter, base_model_path=base,
                           base_revision=None, model_dir=Path(f"/w/{name}/model"),
                           method=SimpleNamespace(name=method, params=SimpleNamespace(r=r)))


def test_vllm_command_for_lora_runs_over_one_base() -> None:
    from tuneforge.serving.vllm import vllm_command

    cmd = vllm_command([_run("a", r=4), _run("b", r=24), _run("cls", generative=False)], port=9000, max_loras=1)
    assert cmd[:3] == ["vllm", "serve", "/m/base"]
    assert cmd[cmd.index("--max-lora-rank") + 1] == "32" and cmd[cmd.index("--max-loras") + 1] == "1"
    start = cmd.index("--lora-modules") + 1
    assert cmd[start:start + 2] == ["a=/w/a/model", "b=/w/b/model"]
    assert "--enable-lora" in cmd and cmd[-4:] == ["--host", "127.0.0.1", "--port", "9000"]
    assert vllm_command([_run("full", "full", adapter=False)])[:5] == ["vllm", "serve", "/w/full/model",
                                                                       "--served-model-name", "full"]


@pytest.mark.parametrize(("runs", "needle"), [
    ([_run("a"), _run("b", base="/m/other")], "different bases"),
    ([_run("a", "ia3")], "LoRA adapters only"),
    ([_run("full", "full", adapter=False), _run("a")], "one base per process"),
    ([_run("cls", generative=False)], "no generative"),
])
def test_vllm_command_refuses_what_vllm_cannot_serve(runs: list[SimpleNamespace], needle: str) -> None:
    from tuneforge.errors import RunError
    from tuneforge.serving.vllm import vllm_command

    with pytest.raises(RunError, match=needle):
        vllm_command(runs)  # type: ignore[arg-type]


def test_serve_names_a_missing_workspace_or_run(tmp_path: Path, cli) -> None:
    res = cli("serve", "--workspace", tmp_path / "nope")
    assert res.code == 2 and "does not exist" in res.err and "Traceback" not in res.err
    res = cli("serve", "no-such-run", "--workspace", tmp_path)
    assert res.code == 2 and "not a run folder" in res.err
