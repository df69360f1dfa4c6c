"""Where `tuneforge forget` deletes: data files (rewritten atomically in their own format), the server's request log
(rows deleted with SQLite's secure_delete, then VACUUM and a WAL truncation, so the erased text is not left in free
pages or the write-ahead log) and text artefacts (reports, samples, logs) where a record's text is replaced.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuneforge.registry.files import write_text

Matches = Callable[[dict[str, Any]], bool]
ERASED = "[erased]"
REWRITABLE = ("jsonl", "json", "csv", "tsv", "parquet")


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(the line as written, its record or None when it is not a JSON object: kept as it is)."""
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            record = None
        yield line, record if isinstance(record, dict) else None


def rewrite_data_file(path: Path, fmt: str, matches: Matches, dry_run: bool) -> int:
    """Delete the records `matches` accepts from a data file; returns how many (with dry_run: would be)."""
    if fmt == "jsonl":
        kept, gone = [], 0
        for line, record in _rows_jsonl(path):
            if record is not None and matches(record):
                gone += 1
            else:
                kept.append(line)
        if gone and not dry_run:
            write_text(path, "".join(kept))
        return gone
    if fmt == "json":
        data = json.loads(path.read_text(encoding="utf-8"))
        wrapper = next(iter(data)) if isinstance(data, dict) and len(data) == 1 else None
        items = data[wrapper] if wrapper else data
        kept_items = [r for r in items if not (isinstance(r, dict) and matches(r))]
        if len(kept_items) < len(items) and not dry_run:
            write_text(path, json.dumps({wrapper: kept_items} if wrapper else kept_items, ensure_ascii=False,
                                        indent=1) + "\n")
        return len(items) - len(kept_items)
    if fmt in ("csv", "tsv"):
        return _rewrite_delimited(path, "," if fmt == "csv" else "\t", matches, dry_run)
    return _rewrite_parquet(path, matches, dry_run)


def _rewrite_delimited(path: Path, delimiter: str, matches: Matches, dry_run: bool) -> int:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = list(reader)
    kept = [r for r in rows if not matches(dict(r))]
    if len(kept) < len(rows) and not dry_run:
        out = io.StringIO()
        # The file's own line ending is kept (BANKING77's CSVs use \r\n).
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], delimiter=delimiter,
                                lineterminator="\r\n" if "\r\n" in text[:4096] else "\n")
        writer.writeheader()
        writer.writerows(kept)
        write_text(path, out.getvalue())
    return len(rows) - len(kept)


def _rewrite_parquet(path: Path, matches: Matches, dry_run: bool) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    keep = [not matches(row) for row in table.to_pylist()]
    gone = keep.count(False)
    if gone and not dry_run:
        staging = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.filter(pa.array(keep)), staging)
        staging.replace(path)
    return gone


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value, and for a list of chat messages their contents joined as the SFT task
    joins them (a logged conversation then matches the record it came from)."""
    out: list[str] = []
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(strings_in(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(strings_in(v))
        contents = [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
        if len(contents) > 1:
            out.append("\n".join(contents))
    return out


def erase_from_request_log(path: Path, matches: Callable[[str], bool], dry_run: bool) -> dict[str, Any]:
    """Delete every logged request whose input or output holds a matching text; rows of other tables that point
    at a deleted request (a `request_id` column, e.g. feedback) go with it."""
    try:
        return _erase_rows(path, matches, dry_run)
    except sqlite3.DatabaseError as exc:  # locked by a long write, or not a request log at all
        from tuneforge.errors import TuneforgeError

        raise TuneforgeError(f"cannot erase from the request log {path}: {exc}",
                             fix="retry (a busy server holds it briefly), or check the file is a tuneforge "
                                 "request log") from None


def _erase_rows(path: Path, matches: Callable[[str], bool], dry_run: bool) -> dict[str, Any]:
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros, not left in free pages
        found = []
        for row_id, given, answered in db.execute("SELECT id, input, output FROM requests"):
            values = [json.loads(v) for v in (given, answered) if v is not None]
            if any(matches(s) for v in values for s in strings_in(v)):
                found.append(row_id)
        linked: dict[str, int] = {}
        if found and not dry_run:
            marks = ",".join("?" * len(found))
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name != 'requests'"):
                columns = {c[1] for c in db.execute(f'PRAGMA table_info("{table}")')}
                if "request_id" in columns:
                    linked[table] = db.execute(f'DELETE FROM "{table}" WHERE request_id IN ({marks})',
                                               found).rowcount
            db.execute(f"DELETE FROM requests WHERE id IN ({marks})", found)
            db.commit()
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return {"path": str(path), "found": len(found), "deleted": 0 if dry_run else len(found),
            "linked_rows_deleted": linked, "vacuumed": bool(found) and not dry_run}


TEXT_ARTEFACTS = ("*.md", "*.html", "*.jsonl", "*.json", "*.log", "*.txt", "*.yaml")


def scrub_text_files(folder: Path, texts: set[str], dry_run: bool, skip: Callable[[Path], bool]) -> dict[str, int]:
    """Replace each erased text (as stored, and HTML/JSON-escaped) in the folder's text artefacts with [erased];
    returns occurrences per file (relative path). Only texts of two or more words and 8+ characters are
    replaced: a single word (often also a label name) would hit unrelated places."""
    import html

    needles = set()
    for text in (t for t in texts if len(t) >= 8 and len(t.split()) >= 2):
        needles |= {text, html.escape(text), json.dumps(text, ensure_ascii=False)[1:-1], json.dumps(text)[1:-1]}
    ordered = sorted(needles, key=len, reverse=True)  # the longest first: a text inside another is not split
    found: dict[str, int] = {}
    if not ordered or not folder.is_dir():
        return found
    for pattern in TEXT_ARTEFACTS:
        for file in sorted(folder.rglob(pattern)):
            if not file.is_file() or skip(file):
                continue
            try:
                content = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            hits = sum(content.count(n) for n in ordered)
            if not hits:
                continue
            found[str(file.relative_to(folder))] = hits
            if not dry_run:
                for needle in ordered:
                    content = content.replace(needle, ERASED)
                write_text(file, content)
    return found
