"""`tuneforge serve` (OpenAI-compatible server over a workspace of runs) and `tuneforge keys` (its API keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.errors import TuneforgeError

keys_app = typer.Typer(help="API keys for `tuneforge serve` (stored hashed in the workspace).", no_args_is_help=True)
console = Console()
Workspace = Annotated[Path, typer.Option("--workspace", help="Folder of run folders (each finished run is a model).")]


def serve(runs: Annotated[list[str] | None, typer.Argument(help="Runs to serve (names in the workspace, or "
                                                                  "paths); default: every finished run.")] = None,
          workspace: Workspace = Path("runs"),
          host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8000,
          max_adapters: Annotated[int, typer.Option(help="Adapter runs resident at once (LRU past it).")] = 8,
          max_batch: Annotated[int, typer.Option(help="Requests run together at most (1: no batching).")] = 8,
          batch_window_ms: Annotated[float, typer.Option(help="How long a request waits for others.")] = 10.0,
          rate_limit: Annotated[int, typer.Option(help="Requests per minute per key (default for keys "
                                                       "without their own).")] = 600,
          max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted (413 past it).")] = 1 << 20,
          max_upload_bytes: Annotated[int, typer.Option(help="Largest file upload (POST /v1/files).")] = 100 << 20,
          max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = 1024,
          max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt accepted, in tokens.")] = 4096,
          cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin "
                                                                     "(repeatable); CORS is off without it.")] = None,
          log_inputs: Annotated[bool, typer.Option(help="Keep inputs/outputs in the request log (else only "
                                                        "metadata).")] = True,
          redact_pii: Annotated[bool, typer.Option(help="Redact e-mails, IBANs, cards, phones in the log.")] = True,
          retention_days: Annotated[float, typer.Option(help="Delete request-log entries older than this "
                                                             "(0: keep all).")] = 30.0,
          engine: Annotated[str, typer.Option(help="transformers (in this process) or vllm.")] = "transformers",
          dry_run: Annotated[bool, typer.Option("--dry-run", help="With --engine vllm: print the command.")] = False,
          device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps.")] = "cpu",
          workers: Annotated[int, typer.Option(min=0, help="Fine-tuning job workers to run beside the "
                                                           "server.")] = 0,
          queue: Annotated[str | None, typer.Option(help="Jobs queue URL (postgresql://...); default: the "
                                                         "workspace's SQLite file.")] = None) -> None:
    """Serve every finished run as an OpenAI-compatible API (chat, completions, embeddings, classify)."""
    if engine == "vllm":
        _serve_vllm(workspace, list(runs or []), host, port, max_adapters, dry_run)
        return
    if engine != "transformers":
        raise TuneforgeError(f"unknown engine {engine!r}", fix="use --engine transformers or --engine vllm")
    import uvicorn

    from tuneforge.serving.app import ServeSettings, create_app
    from tuneforge.serving.engine import Limits

    settings = ServeSettings(workspace=workspace, runs=tuple(runs or ()), max_adapters=max_adapters,
                             max_batch=max_batch, batch_window_ms=batch_window_ms, rate_limit=rate_limit,
                             max_body_bytes=max_body_bytes, cors_origins=tuple(o for o in cors_origin or [] if o),
                             max_upload_bytes=max_upload_bytes,
                             log_inputs=log_inputs, redact_pii=redact_pii,
                             retention_days=retention_days or None, device=device,
                             limits=Limits(max_new_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens),
                             jobs_queue=queue)
    app = create_app(settings)
    names = ", ".join(app.state.serving.engine.runs) or "(no finished runs; only `default` embeddings)"
    console.print(f"serving {names} on http://{host}:{port}/v1  (keys: tuneforge keys create --name NAME)")
    console.print(f"dashboard: http://{host}:{port}/  (log in with an API key)", highlight=False)
    from tuneforge.cli.jobs_cmd import start_workers, stop_workers  # fine-tuning job workers (cli/jobs_cmd.py)

    procs = start_workers(workspace, queue, workers)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        stop_workers(procs)



def _serve_vllm(workspace: Path, runs: list[str], host: str, port: int, max_adapters: int, dry_run: bool) -> None:
    import os
    import shlex

    from tuneforge.serving.model_pool import discover_runs
    from tuneforge.serving.vllm import vllm_command

    command = vllm_command(list(discover_runs(workspace, runs).values()), host=host, port=port,
                           max_loras=max_adapters)
    if dry_run:
        print(shlex.join(command))
        return
    os.execvp(command[0], command)  # vLLM owns the process from here (its own server, logs and signals)


@keys_app.command("create")
def create_key(name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
               scope: Annotated[str, typer.Option(help="inference, jobs or admin.")] = "inference",
               rate_limit: Annotated[int | None, typer.Option(help="Requests per minute (default: the "
                                                                   "server's).")] = None,
               workspace: Workspace = Path("runs")) -> None:
    """Create a key. It is printed once; only its hash is stored."""
    from tuneforge.serving.keys import KeyStore, store_path

    key, secret = KeyStore(store_path(workspace)).create(name, scope, rate_limit)
    console.print(f"created key {key.key_id} ({key.name}, scope {key.scope}); it is shown only now:", highlight=False)
    print(secret)


@keys_app.command("list")
def list_keys(workspace: Workspace = Path("runs")) -> None:
    """Keys of the workspace (ids and names; secrets are not stored)."""
    import datetime as dt

    from tuneforge.serving.keys import KeyStore, store_path

    for key in KeyStore(store_path(workspace)).list():
        created = dt.datetime.fromtimestamp(key.created, dt.UTC).strftime("%Y-%m-%d %H:%M")
        state = "revoked" if key.revoked else "active"
        limit = f"{key.rate_limit}/min" if key.rate_limit else "default rate"
        print(f"{key.key_id}  {key.name}  {key.scope}  {state}  {limit}  created {created} UTC")


@keys_app.command("revoke")
def revoke_key(key: Annotated[str, typer.Argument(help="Key id or name (every key of that name).")],
               workspace: Workspace = Path("runs")) -> None:
    """Revoke a key; the server refuses it from the next request on."""
    from tuneforge.serving.keys import KeyStore, store_path

    for gone in KeyStore(store_path(workspace)).revoke(key):
        console.print(f"revoked {gone.key_id} ({gone.name})")
