"""`tuneforge data`: inspect a file, or prepare (validate, clean, split, report) a config's data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect and prepare data.", no_args_is_help=True)
console = Console()


@app.command()
def inspect(file: Annotated[str, typer.Argument(help="Data file or datasets folder.")],
            fmt: Annotated[str, typer.Option("--format", help="auto | jsonl | csv | tsv | parquet | conll")] =
            "auto",
            task: Annotated[str, typer.Option("--task", help="Validate as this task (auto: token_classification "
                                                             "for CoNLL files or tokens/tags records, else "
                                                             "classification).")] = "auto",
            text: Annotated[str, typer.Option("--text-column")] = "text",
            label: Annotated[str, typer.Option("--label-column")] = "label",
            rows: Annotated[int, typer.Option("--rows", min=1, help="Example rows to show.")] = 5) -> None:
    """Show a file's format, columns, example rows, and validate it as a task (errors name file:line)."""
    from itertools import chain

    from tuneforge.config import ColumnsConfig
    from tuneforge.data.sources import detect_format, infer_task, read_records
    from tuneforge.errors import DataError
    from tuneforge.tasks import TASKS, RecordError

    # An unknown extension is CoNLL only when the task says so; with auto the extension must tell.
    detected = detect_format(file, fmt, "" if task == "auto" else task)
    records = read_records(file, detected, task)
    first = next(records, None)
    if first is None:
        raise DataError("no records found", file=file, fix="the file is empty")
    if task == "auto":
        task = infer_task(detected, first[0])
    task_obj = TASKS.get(task)(TASKS.get(task).Params(name=task))
    columns = ColumnsConfig(text=text, label=label)
    seen: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    samples = []
    count = 0
    for raw, src, line in chain([first], records):
        count += 1
        seen.update(raw.keys())
        try:
            example = task_obj.parse(raw, columns, None)
        except RecordError as err:
            raise DataError(str(err), file=src, line=err.line or line, fix=err.fix) from None
        labels.update(task_obj.labels_of(example))
        if len(samples) < rows:
            samples.append(example)
    console.print(f"[bold]{file}[/bold]: format {detected}, task {task}, {count} records, "
                  f"columns: {', '.join(seen)}")
    table = Table(show_header=True)
    for col in samples[0]:
        table.add_column(col, overflow="fold")
    for ex in samples:
        table.add_row(*[str(v)[:120] for v in ex.values()])
    console.print(table)
    console.print(f"{len(labels)} labels: " + ", ".join(f"{k}={v}" for k, v in labels.most_common(20)))
    console.print("[green]all records valid[/green]")


@app.command()
def prepare(config: Path,
            overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a key.")] = None,
            skip_invalid: Annotated[bool, typer.Option("--skip-invalid")] = False,
            out: Annotated[Path | None, typer.Option("--out", help="Write report.json and splits here.")] = None
            ) -> None:
    """Validate, clean and split a config's data and print the data report."""
    from tuneforge.api import prepare_data
    from tuneforge.data.report import render_report
    from tuneforge.registry.files import write_json, write_jsonl

    sets = list(overrides or []) + (["data.skip_invalid=true"] if skip_invalid else [])
    data = prepare_data(config, sets)
    render_report(data.report, console)
    if out is not None:
        write_json(out / "report.json", data.report)
        for name, rows in data.splits.items():
            write_jsonl(out / f"{name}.jsonl", rows)
        console.print(f"wrote {out}/report.json and the splits")


@app.command()
def preview(config: Path,
            masks: Annotated[bool, typer.Option("--masks", help="Highlight the tokens the loss trains on.")] = False,
            n: Annotated[int, typer.Option("--n", min=1, help="Examples to show.")] = 3,
            overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a key.")] = None) -> None:
    """Show the first training examples as the model will see them: read, cleaned and split exactly as training
    prepares them (with --masks: trained tokens in green), then the data report's warnings."""
    from rich.markup import escape
    from rich.text import Text

    from tuneforge.config import load_config
    from tuneforge.data.prepare import prepare_data
    from tuneforge.errors import ConfigError
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS

    cfg = load_config(config, overrides)
    task = TASKS.get(cfg.task.name)(cfg.task)
    if masks and not hasattr(task, "token_mask"):
        raise ConfigError(f"--masks applies to generative tasks; {task.name} trains on labels, not tokens",
                          key="task.name", fix="drop --masks")
    tokenizer = load_tokenizer(resolve_model_path(cfg.model), cfg.model.trust_remote_code)
    task.prepare_tokenizer(tokenizer)
    # The prepared training split, not the raw file: cleaning (whitespace, PII redaction, dedupe) and the
    # truncation filter change what trains, and a preview of the raw file would hide that.
    data = prepare_data(cfg, task, tokenizer)
    # In file order (the split shuffles): the first examples of the file that went to the training split.
    for example in sorted(data.splits["train"], key=_file_order)[:n]:
        console.rule(example.get("_src", ""))
        if not masks:
            console.print(task.text_of(example), highlight=False, markup=False)
            continue
        text = Text()
        pieces = task.token_mask(example, tokenizer, cfg.data.max_length)
        for piece, trained in pieces:
            text.append(piece, style="bold green" if trained else "dim")
        console.print(text)
        trained = sum(1 for _, t in pieces if t)
        console.print(f"[dim]{trained} of {len(pieces)} tokens trained[/dim]")
    for warning in data.report.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False)


def _file_order(example: dict) -> tuple[str, int]:
    from tuneforge.tasks.base import source_of

    file, line = source_of(example)
    return file or "", line or 0
