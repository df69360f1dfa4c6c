"""`tuneforge config`: print the JSON Schema, write a commented starter file, validate a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.errors import ConfigError

app = typer.Typer(help="Run configuration files.", no_args_is_help=True)
console = Console()

STARTERS_DIR = Path(__file__).resolve().parent.parent / "templates" / "starters"


def starters() -> dict[str, Path]:
    """Commented starter configs, one YAML file per task (templates/starters/<task>.yaml)."""
    return {p.stem: p for p in sorted(STARTERS_DIR.glob("*.yaml"))}


@app.command()
def schema() -> None:
    """Print the JSON Schema of a run config."""
    from tuneforge.config import RunConfig

    print(json.dumps(RunConfig.model_json_schema(), indent=2))


@app.command()
def init(task: Annotated[str, typer.Option("--task", help="classification | token_classification | sft | embedding | "
                                                          "preference | reward | rlhf | distillation")] =
         "classification",
         out: Annotated[Path, typer.Option("--out", help="Where to write it.")] = Path("tuneforge.yaml"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write a commented starter config."""
    available = starters()
    if task not in available:
        raise ConfigError(f"no starter for task {task!r}", key="--task", fix=f"use one of: {', '.join(available)}")
    if out.exists() and not force:
        raise ConfigError("file exists", file=out, fix="choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(available[task].read_text())
    console.print(f"wrote {out}")


@app.command()
def validate(config: Path) -> None:
    """Check a config file; prints the resolved config."""
    from tuneforge.config import dump_config, load_config

    console.print(dump_config(load_config(config)), highlight=False)
    console.print(f"[green]{config} is valid[/green]")
