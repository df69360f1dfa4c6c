"""Fine-tuning jobs through the official `openai` client against uvicorn on 127.0.0.1, with a worker training in a
child process: upload -> create -> poll -> events and checkpoints -> chat with the `ft:` model (supervised and DPO),
refusals naming the field, cancel within one step keeping its checkpoint, pause and resume from it, scopes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_harness import admin_key, openai, running_server

ANSWER = "Your refund is on its way."
# small and quick: few steps, no baselines, no MLflow (the slow real-model test keeps MLflow on)
FAST: dict[str, Any] = {"training": {"max_steps": 4, "eval_steps": 2, "threads": 1},
                        "evaluation": {"baselines": []}, "tracking": {"mlflow": False}, "data": {"max_length": 64}}
FAST_SFT = {**FAST, "task": {"eval_generations": 2, "max_new_tokens": 8, "forgetting": {"enabled": False}}}


def chat_lines(n: int = 24) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"refund order {i}"}, {"role": "assistant", "content": ANSWER}]}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def dpo_lines(n: int = 24) -> bytes:
    """OpenAI's DPO line format."""
    rows = [{"input": {"messages": [{"role": "user", "content": f"refund order {i}"}]},
             "preferred_output": [{"role": "assistant", "content": ANSWER}],
             "non_preferred_output": [{"role": "assistant", "content": "no idea, go away."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def jobs_server(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tuneforge.registry.base_models import add
    from tuneforge.serving.state import ServeSettings
    from tuneforge.serving.worker import Worker

    workspace = tmp_path_factory.mktemp("jobs-ws")
    add(workspace, "tiny", tiny_causal)
    worker = Worker(workspace, lease_s=10, poll_s=0.2, threads=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with running_server(ServeSettings(workspace=workspace)) as server:
            yield server
    finally:
        worker.stop.set()
        thread.join(timeout=120)


def upload(client: Any, data: bytes, name: str = "train.jsonl") -> str:
    file = client.files.create(file=(name, data), purpose="fine-tune")
    assert file.status == "processed", file.status_details
    return file.id


def wait_for(client: Any, job_id: str, done: Any, timeout: float = 300) -> Any:
    deadline = time.time() + timeout
    job = client.fine_tuning.jobs.retrieve(job_id)
    while not done(job) and time.time() < deadline:
        assert job.status != "failed", job.error
        time.sleep(0.2)
        job = client.fine_tuning.jobs.retrieve(job_id)
    assert done(job), f"timed out: {job.status} step {job.tuneforge.get('step')}"  # type: ignore[attr-defined]
    return job


def finished(job: Any) -> bool:
    return job.status in ("succeeded", "failed", "cancelled")


def test_supervised_job_end_to_end(jobs_server: Any) -> None:
    client = jobs_server.client()
    file_id = upload(client, chat_lines())
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file_id, suffix="support",
                                         hyperparameters={"n_epochs": 1, "batch_size": 8},
                                         extra_body={"tuneforge": FAST_SFT})
    assert job.status == "queued" and job.model == "tiny"
    job = wait_for(client, job.id, finished)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:tests:support:{job.id}"  # ft:{base}:{org (the key's name)}:{suffix}:{id}
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics and all(isinstance(m["step"], int) and isinstance(m["train_loss"], float) for m in metrics)
    assert any(m.get("valid_loss") is not None for m in metrics)
    assert events[0].message.startswith("The job has successfully completed")  # newest first
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [4, 2] and checkpoints[0].metrics.step == 4
    reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=4,
                                           messages=[{"role": "user", "content": "refund order 3"}])
    assert reply.model == job.fine_tuned_model and reply.choices[0].message.content is not None
    early = client.chat.completions.create(model=checkpoints[-1].fine_tuned_model_checkpoint, max_tokens=4,
                                           messages=[{"role": "user", "content": "refund order 3"}])
    assert early.choices[0].finish_reason in ("stop", "length")
    assert job.fine_tuned_model in {m.id for m in client.models.list().data}
    run = jobs_server.workspace / job.id  # a normal run folder, trained on the stored file
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 4
    assert "/.tuneforge/files/" in (run / "config.yaml").read_text()
    _continue_from(client, job, file_id, jobs_server.workspace)


def _continue_from(client: Any, parent: Any, file_id: str, workspace: Path) -> None:
    """`model` naming a finished job's `ft:` id continues training its adapter (model.from_run)."""
    import yaml

    body = _refused(lambda: client.fine_tuning.jobs.create(model=parent.fine_tuned_model, training_file=file_id,
                                                           method={"type": "dpo"}))  # an sft run cannot go on as dpo
    assert body["param"] == "model" and "sft run" in body["message"]
    fast = {**FAST_SFT, "training": {**FAST_SFT["training"], "max_steps": 2}}
    job = client.fine_tuning.jobs.create(model=parent.fine_tuned_model, training_file=file_id, suffix="more",
                                         extra_body={"tuneforge": fast})
    job = wait_for(client, job.id, finished)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:tests:more:{job.id}"  # the base stays the parent's
    model = yaml.safe_load((workspace / job.id / "config.yaml").read_text())["model"]
    assert model["from_run"] == str((workspace / parent.id).resolve())


def test_dpo_job_end_to_end(jobs_server: Any) -> None:
    import yaml

    client = jobs_server.client()
    file_id = upload(client, dpo_lines(), "pairs.jsonl")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file_id,
                                         method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2,
                                                                                           "batch_size": 8}}},
                                         extra_body={"tuneforge": FAST})
    job = wait_for(client, job.id, finished)
    assert job.status == "succeeded", job.error
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    task = yaml.safe_load((jobs_server.workspace / job.id / "config.yaml").read_text())["task"]
    assert (task["name"], task["algorithm"], task["beta"]) == ("preference", "dpo", 0.2)
    assert any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data)
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data
    reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=4,
                                           messages=[{"role": "user", "content": "refund order 3"}])
    assert reply.choices


def _refused(call: Any) -> Any:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    return info.value.body


def test_refusals_name_the_field_and_scopes_hold(jobs_server: Any) -> None:
    client = jobs_server.client()
    file_id = upload(client, chat_lines(6))
    jobs = client.fine_tuning.jobs
    assert _refused(lambda: jobs.create(model="tiny", training_file="file-missing"))["param"] == "training_file"
    assert _refused(lambda: jobs.create(model="tiny", training_file=file_id, validation_file="file-nope")
                    )["param"] == "validation_file"
    body = _refused(lambda: jobs.create(model="tiny", training_file=file_id, hyperparameters={"n_epoch": 2}))
    assert body["param"] == "hyperparameters.n_epoch"
    assert _refused(lambda: jobs.create(model="no-such-model", training_file=file_id))["param"] == "model"
    body = _refused(lambda: jobs.create(model="tiny", training_file=file_id,
                                        extra_body={"tuneforge": {"output_dir": "/tmp/elsewhere"}}))
    assert body["param"] == "tuneforge.output_dir"
    assert _refused(lambda: jobs.create(model="tiny", training_file=file_id,
                                        extra_body={"tuneforge": {"training": {"epochz": 1}}}))["param"] \
        .startswith("tuneforge.training")
    assert not jobs.list().data or all(j.training_file != "file-missing" for j in jobs.list().data)
    weak = jobs_server.client(admin_key(jobs_server.workspace, "app", "inference"))
    for call in (lambda: weak.fine_tuning.jobs.list(),
                 lambda: weak.fine_tuning.jobs.create(model="tiny", training_file=file_id)):
        with pytest.raises(openai.PermissionDeniedError):
            call()
    with pytest.raises(openai.NotFoundError):
        jobs.retrieve("ftjob-0000")


def test_pause_resume_then_cancel_within_one_step(jobs_server: Any) -> None:
    client = jobs_server.client()
    file_id = upload(client, chat_lines())
    long = {**FAST_SFT, "training": {"max_steps": 500, "eval_steps": 1000, "threads": 1, "batch_size": 4}}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file_id, extra_body={"tuneforge": long})
    wait_for(client, job.id, lambda j: (j.tuneforge.get("step") or 0) >= 2)
    paused = client.fine_tuning.jobs.pause(job.id)
    wait_for(client, job.id, lambda j: j.status == "paused")
    first = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(first) == 1 and paused.tuneforge["step"] <= first[0].step_number <= paused.tuneforge["step"] + 1
    client.fine_tuning.jobs.resume(job.id)
    wait_for(client, job.id, lambda j: j.status == "running" and (j.tuneforge.get("step") or 0)
             >= first[0].step_number + 2)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    asked_at = cancelled.tuneforge["step"]  # the step its worker had finished when the cancel was stored
    job = wait_for(client, job.id, finished)
    assert job.status == "cancelled" and job.fine_tuned_model is None
    last = client.fine_tuning.jobs.checkpoints.list(job.id).data[0]
    assert asked_at <= last.step_number <= asked_at + 1  # stopped within one training step...
    assert (jobs_server.workspace / job.id / "checkpoints" / f"checkpoint-{last.step_number}").is_dir()  # ...kept
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=200).data]
    assert f"Resumed from the checkpoint at step {first[0].step_number}" in messages
    reply = client.chat.completions.create(model=last.fine_tuned_model_checkpoint, max_tokens=4,
                                           messages=[{"role": "user", "content": "refund order 3"}])
    assert reply.choices  # a cancelled job's checkpoint is still servable


def test_jobs_cli_creates_lists_and_cancels(tiny_causal: Path, tmp_path: Path, cli) -> None:
    import yaml

    from tuneforge.registry.base_models import add

    workspace = tmp_path / "ws"  # no worker here: the job stays queued until cancelled
    add(workspace, "tiny", tiny_causal)
    data = tmp_path / "chat.jsonl"
    data.write_bytes(chat_lines(6))
    config = tmp_path / "extra.yaml"
    config.write_text(yaml.safe_dump({"training": {"max_steps": 3}}))
    res = cli("jobs", "create", "--model", "tiny", "--training-file", data, "--config", config,
              "--epochs", "2", "--suffix", "cli", "--workspace", workspace)
    assert res.code == 0, res.err
    job_id = res.out.strip().splitlines()[-1]
    res = cli("jobs", "list", "--workspace", workspace)
    assert job_id in res.out and "queued" in res.out
    res = cli("jobs", "cancel", job_id, "--workspace", workspace)
    assert res.code == 0 and f"{job_id}: cancelled" in res.out
    res = cli("jobs", "events", job_id, "--json", "--workspace", workspace)
    messages = [json.loads(line)["message"] for line in res.out.splitlines()]
    assert messages[0].startswith("Validating training file") and messages[-1] == "Cancellation requested"
    from tuneforge.serving.jobs_service import JobsService

    job = JobsService(workspace).get(job_id)
    assert job.status == "cancelled"
    assert job.request["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2
    res = cli("jobs", "create", "--model", "tiny", "--training-file", "file-nope", "--workspace", workspace)
    assert res.code == 2 and "training_file" in res.err and "Traceback" not in res.err
