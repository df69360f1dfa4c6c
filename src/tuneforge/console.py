"""The console tuneforge's own messages go to (library output goes to the run's log file)."""

from __future__ import annotations

from typing import Any


def console_or_default(console: Any = None) -> Any:
    from rich.console import Console

    return console or Console()
