"""`tuneforge models`: the workspace's catalogue of base models that fine-tuning jobs name (registry/base_models.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Base models fine-tuning jobs can start from (local folders or GGUF files).",
                  no_args_is_help=True)
console = Console()
Workspace = Annotated[Path, typer.Option("--workspace", help="The server's workspace (folder of run folders).")]


@app.command("add")
def add_model(name: Annotated[str, typer.Argument(help="Name jobs use as `model` (letters, digits, . _ -).")],
              path: Annotated[Path, typer.Argument(help="A local Hugging Face model folder or a .gguf file.")],
              workspace: Workspace = Path("runs")) -> None:
    """Add a base model (or point an existing name at a new path); the path is checked first."""
    from tuneforge.registry.base_models import add

    entry = add(workspace, name, path)
    console.print(f"added base model {entry.name} ({entry.kind}): {entry.path}", highlight=False, soft_wrap=True)


@app.command("list")
def list_models(workspace: Workspace = Path("runs")) -> None:
    """Base models of the workspace, `default` (the bundled MiniLM) first."""
    from tuneforge.registry.base_models import list_bases

    for entry in list_bases(workspace):
        print(f"{entry.name}\t{entry.kind}\t{entry.path}")


@app.command("remove")
def remove_model(name: Annotated[str, typer.Argument(help="A name from `tuneforge models list`.")],
                 workspace: Workspace = Path("runs")) -> None:
    """Remove a name from the catalogue (the model's files are left where they are)."""
    from tuneforge.registry.base_models import remove

    remove(workspace, name)
    console.print(f"removed base model {name}", highlight=False)
