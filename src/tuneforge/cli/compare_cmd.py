"""`tuneforge compare`: fine-tuned runs vs prompt engineering vs retrieval on one test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def compare(config: Annotated[Path, typer.Argument(help="Run config (YAML) whose data and split to compare on.")],
            runs: Annotated[list[Path] | None, typer.Option("--run", help="Finished run folder (repeatable); "
                                                            "default: compare.runs of the config.")] = None,
            out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: "
                                                     "<output_dir>/<name>-compare).")] = None,
            overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key.")] = None
            ) -> None:
    """Zero-shot, few-shot, retrieval and fine-tuned runs side by side, with CIs, a significance test, costs and
    a recommendation; writes report.html and report.md."""
    from rich.console import Console

    from tuneforge.evaluation.compare import compare as run_compare

    run_compare(config, runs=[str(r) for r in runs] if runs else None, overrides=overrides, console=Console(),
                out_dir=out)
