"""The server killed (SIGKILL) in the middle of a load: no acknowledged request-log entry is lost, clients get
errors and not hangs, and a restart on the same workspace serves again.

A real `tuneforge serve` subprocess on 127.0.0.1 over a tiny classifier; four client threads send `/v1/classify`
requests, each with a unique text, for the whole load; the server is killed at a seeded moment, restarted after a
pause, and the load goes on. "Acknowledged" means the client read a 200: each of those texts must then be in the
request log (it is committed, synchronous=FULL, before the response is sent)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl
from serve_harness import admin_key, free_port, httpx

CLIENTS = 4
CLIENT_TIMEOUT_S = 10.0  # a request that takes longer than this counts as a hang


@dataclass
class LoadResult:
    acknowledged: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (seconds the failed request took, error type)
    acknowledged_after_restart: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def _start(workspace: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tuneforge.cli.main", "serve", "--workspace", str(workspace), "--port", str(port),
           "--rate-limit", "1000000", "--max-batch", "8"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s  # bounded: a server that never comes up fails the test, never hangs it
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def _warm_up(url: str, key: str) -> None:
    """One request that loads the model (lazily loaded on first use), so the load measures serving, not loading."""
    resp = httpx.post(f"{url}/v1/classify", json={"model": "intent", "input": "warm up"}, timeout=120,
                      headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text


def _client_loop(url: str, key: str, index: int, stop: threading.Event, restarted: threading.Event,
                 paused: threading.Event, out: LoadResult, lock: threading.Lock) -> None:
    n = 0
    with httpx.Client(timeout=CLIENT_TIMEOUT_S, headers={"Authorization": f"Bearer {key}"}) as client:
        while not stop.is_set():
            if paused.is_set():  # while the restarted server loads its model
                time.sleep(0.05)
                continue
            text = f"probe {index}-{n} where is my card"
            n += 1
            started = time.monotonic()
            try:
                resp = client.post(f"{url}/v1/classify", json={"model": "intent", "input": text})
            except httpx.TransportError as exc:  # refused, reset, or (a failure of the test) timed out
                with lock:
                    out.errors.append((time.monotonic() - started, type(exc).__name__))
                time.sleep(0.05)
                continue
            with lock:
                out.statuses[resp.status_code] = out.statuses.get(resp.status_code, 0) + 1
            if resp.status_code == 200:
                with lock:
                    out.acknowledged.append(text)
                    out.acknowledged_after_restart += restarted.is_set()


def _run_load(workspace: Path, duration_s: float, seed: int) -> LoadResult:
    port, key = free_port(), admin_key(workspace, "load")
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(seed)
    kill_at = rng.uniform(0.3, 0.5) * duration_s  # a seeded moment in the middle of the load
    proc = _start(workspace, port)
    procs = [proc]
    out, lock, stop, restarted, paused = LoadResult(), threading.Lock(), *(threading.Event() for _ in range(3))
    try:
        _wait_healthy(url, proc)
        _warm_up(url, key)
        threads = [threading.Thread(target=_client_loop, args=(url, key, i, stop, restarted, paused, out, lock),
                                    daemon=True) for i in range(CLIENTS)]
        began = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(kill_at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(1.0)  # clients meet a dead port for a while: they must fail fast
        paused.set()
        procs.append(_start(workspace, port))
        _wait_healthy(url, procs[-1])
        _warm_up(url, key)
        restarted.set()
        paused.clear()
        time.sleep(max(2.0, duration_s - (time.monotonic() - began)))
        stop.set()
        for t in threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 5)
            assert not t.is_alive(), "a client thread hung"
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    return out


def _logged_texts(workspace: Path) -> set[str]:
    db = sqlite3.connect(workspace / ".tuneforge" / "requests.sqlite")
    try:
        rows = db.execute("SELECT input FROM requests WHERE route = '/v1/classify' AND status = 200").fetchall()
    finally:
        db.close()
    return {text for (value,) in rows if value for text in json.loads(value)}  # input: the list of texts


@pytest.fixture(scope="module")
def classifier_workspace(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("serve-kill")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(10))
    cfg = base_config(tiny_bert, data, tmp / "runs", name="intent", training={"epochs": 1, "max_steps": 2,
                                                                              "threads": 1})
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs"


@pytest.mark.parametrize("duration_s", [pytest.param(8.0, id="8s"),
                                        pytest.param(60.0, id="60s", marks=pytest.mark.slow)])
def test_server_killed_under_load_loses_no_acknowledged_entry(classifier_workspace: Path, duration_s: float) -> None:
    out = _run_load(classifier_workspace, duration_s, seed=int(duration_s))
    logged = _logged_texts(classifier_workspace)
    lost = [t for t in out.acknowledged if t not in logged]
    slowest = max((seconds for seconds, _ in out.errors), default=0.0)
    print(f"load {duration_s:.0f} s: {len(out.acknowledged)} acknowledged ({out.acknowledged_after_restart} after the "
          f"restart), {len(out.errors)} failed fast (slowest {slowest:.2f} s), {len(lost)} lost, "
          f"statuses {out.statuses}")
    assert out.acknowledged and not lost, f"{len(lost)} acknowledged requests missing from the log: {lost[:5]}"
    assert out.errors, "the kill should have failed some requests"
    assert slowest < CLIENT_TIMEOUT_S, f"a client waited {slowest:.1f} s: a hang, not an error"
    assert "ReadTimeout" not in {kind for _, kind in out.errors}
    assert out.acknowledged_after_restart > 0, "the restarted server answered nothing"
