"""`tuneforge plan` (placeholder being built; replaced by the real command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plan(config: Annotated[Path, typer.Argument(help="Run config (YAML).")]) -> None:
    """(being built)"""
    raise NotImplementedError
