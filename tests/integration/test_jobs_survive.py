"""Jobs survive crashes: `tuneforge serve --workers 1` killed with SIGKILL mid-job (server, worker and training
together), then restarted, finishes the job from its last checkpoint. And a job on the real small causal LM
(../shared/models/tinystories-656k) through the whole API, with its MLflow record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_jobs_api import FAST_SFT, chat_lines, finished, upload, wait_for

from conftest import SHARED
from serve_harness import admin_key, free_port, openai

pytestmark = pytest.mark.slow


def _serve(workspace: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tuneforge.cli.main", "serve", "--workspace", str(workspace), "--host",
           "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                             timeout=5).with_raw_response.models.list().status_code:
                break
        except openai.AuthenticationError:
            break  # up: it refuses the dummy key
        except openai.APIConnectionError:
            time.sleep(0.3)
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_kill_9_of_server_and_worker_then_restart_resumes_the_job(tiny_causal: Path, tmp_path: Path) -> None:
    from tuneforge.registry.base_models import add
    from tuneforge.serving.jobs_queue import JobQueue, default_queue

    workspace = tmp_path / "ws"
    add(workspace, "tiny", tiny_causal)
    key, port, log = admin_key(workspace), free_port(), tmp_path / "serve.log"
    first = _serve(workspace, port, log)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
        extra = {**FAST_SFT, "training": {"max_steps": 40, "eval_steps": 5, "batch_size": 4, "threads": 1}}
        job = client.fine_tuning.jobs.create(model="tiny", training_file=upload(client, chat_lines()),
                                             extra_body={"tuneforge": extra})
        # past its first checkpoint, before the end
        job = wait_for(client, job.id, lambda j: bool(client.fine_tuning.jobs.checkpoints.list(j.id).data)
                       and (j.tuneforge.get("step") or 0) > 6)
    finally:
        _kill(first)  # SIGKILL: no handler runs anywhere
    queue = JobQueue(default_queue(workspace))
    at_kill = queue.get(job.id).step
    assert queue.get(job.id).status == "running" and at_kill < 40
    time.sleep(2)  # the training child exits within about half a second of its worker (it watches its pid)
    settled = queue.get(job.id).step
    time.sleep(3)
    assert queue.get(job.id).step == settled  # nothing trains on unseen
    at_kill = settled
    second = _serve(workspace, port, log)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
        job = wait_for(client, job.id, finished, timeout=600)
        assert job.status == "succeeded", job.error
        events = [e.data or {} for e in client.fine_tuning.jobs.list_events(job.id, limit=500).data]
        resumed = [e["resumed_from_step"] for e in events if "resumed_from_step" in e]
        assert resumed and 5 <= resumed[0] <= at_kill  # continued from its last checkpoint, not from step 0
        assert job.tuneforge["attempts"] == 2
        train = json.loads((workspace / job.id / "metrics.json").read_text())["train"]
        assert train["steps"] == 40 and train["resumed_from"].endswith(f"checkpoint-{resumed[0]}")
        reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=4,
                                               messages=[{"role": "user", "content": "refund order 1"}])
        assert reply.choices
    finally:
        _kill(second)


@pytest.mark.skipif(not (SHARED / "models" / "tinystories-656k").is_dir(),
                    reason="../shared/models/tinystories-656k not present")
def test_real_small_lm_job_through_the_api(tmp_path: Path) -> None:
    import threading

    from serve_harness import running_server
    from tuneforge.registry.base_models import add
    from tuneforge.serving.state import ServeSettings
    from tuneforge.serving.worker import Worker

    workspace = tmp_path / "ws"
    add(workspace, "tinystories", SHARED / "models" / "tinystories-656k")
    worker = Worker(workspace, poll_s=0.2, threads=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with running_server(ServeSettings(workspace=workspace)) as server:
            client: Any = server.client()
            job = client.fine_tuning.jobs.create(
                model="tinystories", training_file=upload(client, chat_lines(64)), suffix="stories",
                hyperparameters={"n_epochs": 10, "batch_size": 8, "learning_rate_multiplier": 10},
                extra_body={"tuneforge": {"data": {"max_length": 64}, "training": {"eval_steps": 20}}})
            job = wait_for(client, job.id, finished, timeout=900)
            assert job.status == "succeeded", job.error
            metrics = [e.data for e in reversed(client.fine_tuning.jobs.list_events(job.id, limit=500).data)
                       if e.type == "metrics" and e.data.get("train_loss") is not None]
            assert metrics[-1]["train_loss"] < 0.7 * metrics[0]["train_loss"]  # it learns the answer
            reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=12,
                                                   messages=[{"role": "user", "content": "refund order 5"}])
            assert "refund" in reply.choices[0].message.content.lower()
            status = json.loads((workspace / job.id / "run.json").read_text())
            assert status["status"] == "finished" and status["tracking"].get("run_id")  # the MLflow record
    finally:
        worker.stop.set()
        thread.join(timeout=120)
