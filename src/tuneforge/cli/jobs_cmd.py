"""`tuneforge jobs create|list|events|cancel|pause|resume` (the fine-tuning jobs API without a client, on the
workspace itself) and `tuneforge worker` (a process that claims and trains jobs)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tuneforge.errors import TuneforgeError

app = typer.Typer(help="Fine-tuning jobs (the /v1/fine_tuning/jobs API, from the command line).", no_args_is_help=True)
console = Console()
Workspace = Annotated[Path, typer.Option("--workspace", help="The server's workspace (run folders, files, queue).")]
Queue = Annotated[str | None, typer.Option("--queue", help="Jobs queue URL (postgresql://...); default: the "
                                                           "workspace's SQLite file.")]


def _service(workspace: Path, queue: str | None) -> Any:
    from tuneforge.serving.jobs_service import JobsService

    return JobsService(workspace, queue)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _file_id(workspace: Path, value: str, param: str) -> str:
    """A Files API id as given, or a local file uploaded into the workspace's store first."""
    path = Path(value)
    if not path.is_file():
        return value
    from tuneforge.serving.file_store import FileStore

    obj = FileStore(workspace).create(path.name, "fine-tune", path.read_bytes())
    console.print(f"uploaded {path} as {obj.id} ({obj.status})", highlight=False)
    if obj.status != "processed":
        raise TuneforgeError(f"{param} {path} failed validation: {obj.status_details}",
                             fix="fix those lines and run again")
    return str(obj.id)


@app.command("create")
def create(model: Annotated[str, typer.Option(help="Base model (`tuneforge models list`), or `default`.")],
           training_file: Annotated[str, typer.Option(help="A file id, or a local JSONL file (uploaded).")],
           validation_file: Annotated[str | None, typer.Option(help="A file id or a local file.")] = None,
           method: Annotated[str, typer.Option(help="supervised or dpo.")] = "supervised",
           epochs: Annotated[str, typer.Option(help="n_epochs: auto or a number.")] = "auto",
           batch_size: Annotated[str, typer.Option(help="auto or a number.")] = "auto",
           lr_multiplier: Annotated[str, typer.Option(help="learning_rate_multiplier: auto or a number.")] = "auto",
           beta: Annotated[str, typer.Option(help="DPO beta: auto or a number.")] = "auto",
           suffix: Annotated[str | None, typer.Option(help="Part of the fine-tuned model's name.")] = None,
           seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
           config: Annotated[Path | None, typer.Option(help="YAML: a (partial) tuneforge config for the job "
                                                            "(the `tuneforge` extension).")] = None,
           workspace: Workspace = Path("runs"), queue: Queue = None) -> None:
    """Create a job (a worker must run: `tuneforge serve --workers 1` or `tuneforge worker`)."""
    import yaml

    if method not in ("supervised", "dpo"):
        raise TuneforgeError(f"unknown method {method!r}", fix="use --method supervised or --method dpo")

    def number(value: str) -> str | float:
        try:
            return "auto" if value == "auto" else float(value)
        except ValueError:
            raise TuneforgeError(f"{value!r} is not auto or a number", fix="e.g. --epochs 3") from None

    hyper: dict[str, Any] = {"n_epochs": number(epochs), "batch_size": number(batch_size),
                             "learning_rate_multiplier": number(lr_multiplier)}
    hyper = {k: (int(v) if k != "learning_rate_multiplier" and v != "auto" else v) for k, v in hyper.items()}
    if method == "dpo":
        hyper["beta"] = number(beta)
    body: dict[str, Any] = {"model": model, "training_file": _file_id(workspace, training_file, "training_file"),
                            "method": {"type": method, method: {"hyperparameters": hyper}}, "suffix": suffix,
                            "seed": seed}
    if validation_file:
        body["validation_file"] = _file_id(workspace, validation_file, "validation_file")
    if config is not None:
        body["tuneforge"] = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    job = _service(workspace, queue).create({k: v for k, v in body.items() if v is not None}, org="cli")
    console.print(f"created {job.id} ({job.status}); follow it: tuneforge jobs events {job.id} --workspace "
                  f"{workspace}", highlight=False)
    print(job.id)


@app.command("list")
def list_jobs(limit: Annotated[int, typer.Option(help="Jobs shown, newest first.")] = 20,
              workspace: Workspace = Path("runs"), queue: Queue = None) -> None:
    """Jobs, newest first: id, status, step, model, fine-tuned model."""
    jobs, more = _service(workspace, queue).list(limit=limit)
    for job in jobs:
        step = f"{job.step}/{job.total_steps}" if job.total_steps else "-"
        print(f"{job.id}  {job.status:<16} step {step:<9} {job.model}  {job.fine_tuned_model or ''}  "
              f"created {_when(job.created_at)} UTC")
    if more:
        print(f"(more: --limit {limit * 2})")


@app.command("events")
def events(job_id: Annotated[str, typer.Argument(help="Job id.")],
           limit: Annotated[int, typer.Option(help="Most recent events shown.")] = 100,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
           workspace: Workspace = Path("runs"), queue: Queue = None) -> None:
    """A job's events, oldest first (metrics events carry step, train_loss, valid_loss)."""
    page, _ = _service(workspace, queue).events(job_id, limit=limit)
    for event in reversed(page):
        if as_json:
            print(json.dumps({"id": event.id, "created_at": event.created_at, "level": event.level,
                              "type": event.type, "message": event.message, "data": event.data}))
        else:
            print(f"{_when(event.created_at)}  {event.level:<5} {event.message}")


def _act(action: str, job_id: str, workspace: Path, queue: str | None) -> None:
    job = getattr(_service(workspace, queue), action)(job_id)
    pending = f" ({job.control} pending: its worker stops at the end of the current step)" if job.control else ""
    console.print(f"{job.id}: {job.status}{pending}", highlight=False)


@app.command("cancel")
def cancel(job_id: Annotated[str, typer.Argument(help="Job id.")], workspace: Workspace = Path("runs"),
           queue: Queue = None) -> None:
    """Cancel a job (a running one stops within one step, keeping its checkpoint)."""
    _act("cancel", job_id, workspace, queue)


@app.command("pause")
def pause(job_id: Annotated[str, typer.Argument(help="Job id.")], workspace: Workspace = Path("runs"),
          queue: Queue = None) -> None:
    """Pause a job (checkpoint, then stop; `jobs resume` continues from it)."""
    _act("pause", job_id, workspace, queue)


@app.command("resume")
def resume(job_id: Annotated[str, typer.Argument(help="Job id.")], workspace: Workspace = Path("runs"),
           queue: Queue = None) -> None:
    """Resume a paused job from its last checkpoint."""
    _act("resume", job_id, workspace, queue)


def worker(workspace: Workspace = Path("runs"), queue: Queue = None,
           lease_s: Annotated[float, typer.Option(help="Seconds without a heartbeat after which another worker "
                                                       "takes over a job.")] = 30.0,
           threads: Annotated[int | None, typer.Option(help="CPU threads for training (default: all).")] = None,
           parent_pid: Annotated[int | None, typer.Option(hidden=True, help="Exit when this process "
                                                                           "dies.")] = None) -> None:
    """Claim and train fine-tuning jobs until stopped (SIGTERM/Ctrl-C hands the running job back, checkpointed).
    With a PostgreSQL --queue, workers on several machines share the jobs (the workspace on shared storage)."""
    from tuneforge.serving.worker import main

    main(workspace, queue, lease_s, threads, parent_pid)


def start_workers(workspace: Path, queue: str | None, count: int) -> list[subprocess.Popen[bytes]]:
    """`serve --workers N`: N `tuneforge worker` processes beside the server (they die with it)."""
    import os

    cmd = [sys.executable, "-m", "tuneforge.cli.main", "worker", "--workspace", str(workspace),
           "--parent-pid", str(os.getpid()), *(["--queue", queue] if queue else [])]
    # own sessions: a Ctrl-C reaches the server, which stops each worker with SIGTERM (checkpoint, hand back)
    return [subprocess.Popen(cmd, start_new_session=True) for _ in range(count)]


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM: each worker checkpoints its job and hands it back to the queue, then exits."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
