"""Shared helpers for benchmarks: locating ../shared, timing, printing and saving result tables."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "bench" / "results"


def require_shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set TUNEFORGE_SHARED to the shared/ folder)")
    return path


def machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(columns)))
             + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*[_fmt(row.get(c, "")) for c in columns])
    Console().print(table)


def save(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    return path


# The generative benchmarks' models: (folder under ../shared, label in the tables). TinyStories-656K cannot follow an
# instruction, so its exact match is 0; SmolLM2-135M-Instruct is a real chat model, read from its GGUF file.
MODELS: dict[str, tuple[str, str]] = {
    "tinystories": ("models/tinystories-656k", "TinyStories-656K"),
    "smollm2": ("models/smollm2-135m-instruct", "SmolLM2-135M-Instruct (GGUF Q4_1)"),
}


def write_doc_section(doc: Path, key: str, text: str, title: str) -> None:
    """Replace this model's section of a benchmark page (between its markers) and keep everything else, so a run
    for one model does not erase another model's table or the notes written around it."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = doc.read_text() if doc.is_file() else f"{title}\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    doc.write_text(new)
