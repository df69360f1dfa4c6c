"""`tuneforge` entry point. Every user error becomes one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.cli import config_cmd, data_cmd, runs_cmd
from tuneforge.errors import TuneforgeError

app = typer.Typer(name="tuneforge", help="Fine-tune, evaluate and version models privately, on your hardware.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.add_typer(runs_cmd.app, name="runs")
console = Console()
err_console = Console(stderr=True)

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set training.epochs=1")]


@app.command()
def train(config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
          resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
          overrides: Overrides = None,
          skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Drop invalid records.")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or data tables.")] = False) -> None:
    """Prepare the data, fine-tune, evaluate against the base model and record the run."""
    from tuneforge.api import train as run_train

    sets = list(overrides or []) + (["data.skip_invalid=true"] if skip_invalid else [])
    result = run_train(config, resume=resume, overrides=sets, console=console, quiet=quiet)
    console.print(f"[green]done[/green]: run folder {result.run_dir}")


@app.command()
def predict(run: Annotated[Path, typer.Argument(help="Run folder.")],
            text: Annotated[str | None, typer.Argument(help="Text to classify.")] = None,
            file: Annotated[Path | None, typer.Option("--file", help="JSONL input with a 'text' field.")] = None,
            out: Annotated[Path | None, typer.Option("--out", help="JSONL output (with --file).")] = None) -> None:
    """Predict with a finished run: one text, or a JSONL file of texts."""
    import json

    from tuneforge.api import load_run

    if (text is None) == (file is None):
        raise TuneforgeError("give either a TEXT or --file", fix='tuneforge predict RUN "some text"')
    loaded = load_run(run)
    if text is not None:
        console.print_json(json.dumps(loaded.predict([text])[0]))
        return
    assert file is not None
    rows = _read_predict_input(file, loaded.config)
    results = loaded.predict([r[0] for r in rows])
    lines = [json.dumps({**r[1], "prediction": p}, ensure_ascii=False) for r, p in zip(rows, results, strict=True)]
    if out is None:
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        from tuneforge.registry.files import write_text

        write_text(out, "\n".join(lines) + "\n")
        console.print(f"wrote {len(lines)} predictions to {out}")


def _read_predict_input(file: Path, cfg: object) -> list[tuple[object, dict]]:
    from tuneforge.data.sources import read_records
    from tuneforge.errors import DataError

    columns = cfg.data.columns  # type: ignore[attr-defined]
    task = cfg.task.name  # type: ignore[attr-defined]
    key = columns.tokens if task == "token_classification" else columns.text
    pair = columns.text_pair if task != "token_classification" else None
    rows = []
    for raw, src, line in read_records(str(file), "auto", task):
        for needed in [key] + ([pair] if pair else []):
            if needed not in raw or raw[needed] in (None, "", []):
                raise DataError(f"missing or empty '{needed}'", file=src, line=line,
                                fix=f"give every record a '{needed}' (the model was trained with it)")
        rows.append(((raw[key], raw[pair]) if pair else raw[key], raw))
    return rows


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
