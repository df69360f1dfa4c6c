"""`tuneforge` entry point. Every user error becomes one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.cli import (
    compare_cmd,
    config_cmd,
    data_cmd,
    export_cmd,
    forget_cmd,
    generate_cmd,
    jobs_cmd,
    models_cmd,
    plan_cmd,
    runs_cmd,
    serve_cmd,
    sweep_cmd,
)
from tuneforge.errors import TuneforgeError

app = typer.Typer(name="tuneforge", help="Fine-tune, evaluate and version models privately, on your hardware.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.add_typer(runs_cmd.app, name="runs")
app.command()(generate_cmd.generate)
app.command()(generate_cmd.chat)
app.command()(compare_cmd.compare)
app.command()(forget_cmd.forget)  # right to erasure (issue 15)
app.command()(plan_cmd.plan)
app.command()(sweep_cmd.sweep)
app.command()(serve_cmd.serve)
app.add_typer(serve_cmd.keys_app, name="keys")
app.command()(export_cmd.export)
app.add_typer(models_cmd.app, name="models")  # base-model catalogue (issue 12)
app.add_typer(jobs_cmd.app, name="jobs")  # fine-tuning jobs (cli/jobs_cmd.py)
app.command()(jobs_cmd.worker)
from tuneforge.cli import retrain_cmd  # noqa: E402 - retrain / promote / rollback (issue 15, point 3)

app.command()(retrain_cmd.retrain)
app.command()(retrain_cmd.promote)
app.command()(retrain_cmd.rollback)
console = Console()
err_console = Console(stderr=True)

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set training.epochs=1")]


@app.command()
def train(config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
          resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
          overrides: Overrides = None,
          skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Drop invalid records.")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or data tables.")] = False,
          processes: Annotated[int, typer.Option("--processes", min=1, help="Training processes on this machine "
                                                 "(DDP through torchrun/accelerate).")] = 1,
          nodes: Annotated[int, typer.Option("--nodes", min=1, help="Machines taking part.")] = 1,
          node_rank: Annotated[int, typer.Option("--node-rank", min=0, help="This machine's index.")] = 0,
          master_addr: Annotated[str, typer.Option("--master-addr", help="Address of node 0.")] = "127.0.0.1",
          master_port: Annotated[int, typer.Option("--master-port", help="Port on node 0.")] = 29500) -> None:
    """Prepare the data, fine-tune, evaluate against the base model and record the run."""
    from tuneforge.training import distributed as dist

    sets = list(overrides or []) + (["data.skip_invalid=true"] if skip_invalid else [])
    launch = dist.Launch(processes, nodes, node_rank, master_addr, master_port)
    if launch.distributed and not dist.launched():
        args = [str(config), *(["--resume"] if resume else []), *(["--quiet"] if quiet else []),
                *[part for s in sets for part in ("--set", s)]]
        raise typer.Exit(dist.relaunch(launch, args))
    from tuneforge.api import train as run_train

    result = run_train(config, resume=resume, overrides=sets, console=console, quiet=quiet)
    if dist.is_main():
        console.print(f"[green]done[/green]: run folder {result.run_dir}")


@app.command()
def predict(run: Annotated[Path, typer.Argument(help="Run folder.")],
            text: Annotated[str | None, typer.Argument(help="Text to classify.")] = None,
            file: Annotated[Path | None, typer.Option("--file", help="JSONL input with a 'text' field.")] = None,
            out: Annotated[Path | None, typer.Option("--out", help="JSONL output (with --file).")] = None) -> None:
    """Predict with a finished run: one text, or a JSONL file of texts."""
    import json

    from tuneforge.api import load_run, predict_file

    if (text is None) == (file is None):
        raise TuneforgeError("give either a TEXT or --file", fix='tuneforge predict RUN "some text"')
    if text is not None:
        console.print_json(json.dumps(load_run(run).predict([text])[0]))
        return
    assert file is not None
    lines = [json.dumps(row, ensure_ascii=False) for row in predict_file(run, file)]
    if out is None:
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        from tuneforge.registry.files import write_text

        write_text(out, "\n".join(lines) + "\n")
        console.print(f"wrote {len(lines)} predictions to {out}")


def main() -> None:
    try:
        app(standalone_mode=True)
    except TuneforgeError as exc:
        from rich.markup import escape

        # Escaped: messages carry user paths such as data[train] that rich would read as markup.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; continue with --resume (the last checkpoint is kept)")
        sys.exit(130)


if __name__ == "__main__":
    main()
