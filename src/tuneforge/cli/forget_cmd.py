"""`tuneforge forget --text "..." | --file records.jsonl`: erase records from a workspace (right to erasure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def _read_records(file: Path) -> list[dict[str, Any]]:
    """JSONL: each line a record shaped like the training data, or {"text": ...}; a bare JSON string is a text."""
    from tuneforge.registry.forget import ForgetError

    if not file.is_file():
        raise ForgetError(f"{file} not found", fix="give a JSONL file, one record per line")
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForgetError(f"{file}:{number}: malformed JSON ({exc.msg})",
                              fix='each line must be a JSON object, e.g. {"text": "..."}') from None
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict):
            raise ForgetError(f"{file}:{number}: expected a JSON object or string", fix='e.g. {"text": "..."}')
        records.append(value)
    return records


def _print(receipt: dict[str, Any]) -> None:
    verb = "would delete" if receipt["dry_run"] else "deleted"
    table = Table(title=f"{receipt['records']} record(s): where they were found", show_header=True)
    for col in ("where", "path", "found", verb):
        table.add_column(col)
    for d in receipt["datasets"]:
        table.add_row("data file", d["path"], str(d.get("rows_found", "-")), d.get("note") or str(d["rows_found"]))
    for r in receipt["runs"]:
        found = ", ".join(f"{k} {v}" for k, v in r["rows_found"].items()) or "-"
        table.add_row("run", r["path"], found, found if r["rows_found"] else "-")
    log = receipt["request_log"]
    if log.get("found"):
        table.add_row("request log", log["path"], str(log["found"]), str(log["found"]))
    if table.row_count:
        console.print(table)
    for r in receipt["runs"]:
        console.print(f"[bold]{r['action']}[/bold]: {escape(r['path'])} ({r['reason']})", highlight=False)
    for e in receipt["exports"]:
        console.print(f"[bold]{e['action']}[/bold]: export {escape(e['path'])} (of {escape(e['run'])})",
                      highlight=False)
    for v in receipt["registered_versions"]:
        console.print(f"registered model version to replace: {v.get('name')} v{v.get('version')}", highlight=False)
    if not any((receipt["datasets"], receipt["runs"], log.get("found"))):
        console.print("not found anywhere in the workspace")
    if receipt["dry_run"]:
        console.print("[yellow]--dry-run: nothing was changed[/yellow]")
    else:
        console.print(f"receipt (hashes only, no text): {escape(receipt['receipt_file'])}", highlight=False)


def forget(text: Annotated[list[str] | None, typer.Option("--text", help="A text to erase (repeatable).")] = None,
           file: Annotated[Path | None, typer.Option("--file", help="JSONL of records to erase, shaped like the "
                                                                    "training data or {\"text\": ...}.")] = None,
           workspace: Annotated[Path, typer.Option("--workspace", help="Folder of run folders (output_dir).")] =
           Path("runs"),
           scan: Annotated[list[Path] | None, typer.Option("--scan", help="Another folder holding runs or exports "
                                                                          "(repeatable).")] = None,
           data: Annotated[list[Path] | None, typer.Option("--data", help="Another data file or folder to erase "
                                                                          "from, e.g. a curated dataset version "
                                                                          "(repeatable).")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False) -> None:
    """Erase records from data files, run folders and the request log; list the models to retrain."""
    from tuneforge.registry.forget import ErasureQuery
    from tuneforge.registry.forget import forget as run_forget

    query = ErasureQuery(texts=list(text or []), records=_read_records(file) if file else [])
    receipt = run_forget(query, workspace, scan=list(scan or []), data=list(data or []), dry_run=dry_run)
    if as_json:
        console.print_json(json.dumps(receipt))
    else:
        _print(receipt)
