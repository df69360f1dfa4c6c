"""`tuneforge export RUN --to merged|int8|onnx|gguf|student`: write the export and its export-vs-run report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def export(run: Annotated[Path, typer.Argument(help="Finished run folder.")],
           to: Annotated[str, typer.Option("--to", help="merged | int8 | onnx | gguf | student")],
           quantize: Annotated[str | None, typer.Option(
               "--quantize", help="onnx: int8; gguf: f16 (default) or q8_0")] = None,
           out: Annotated[Path | None, typer.Option("--out", help="Export folder (default RUN/exports/KIND).")] = None,
           measure: Annotated[bool, typer.Option(
               "--measure/--no-measure", help="Compare with the run on its test split.")] = True,
           student_config: Annotated[Path | None, typer.Option(
               "--student-config", help="--to student: the student's run config (model.path; the teacher, data "
                                        "and chat template come from the run).")] = None) -> None:
    """Merge, quantise or convert a finished run; the export's report.md compares it with the run."""
    from tuneforge.export import export_run
    from tuneforge.export.evaluate import table_markdown

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # library deprecation notices are not the user's business
        result = export_run(run, to, quantize, out, measure=measure, student_config=student_config)
    if result.figures:
        console.print(table_markdown(result.figures), markup=False, highlight=False)
    console.print(f"[green]done[/green]: {to} export in {result.out}")
