"""The request log read for monitoring: one row per served input (a request may carry several), with feedback.

A log that is missing, not SQLite, or empty for the model and period is the user's error (exit 2), named with the
file and the fix, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError


class MonitorError(TuneforgeError):
    """The request log or the monitored run cannot be used."""


@dataclass
class Served:
    """One input the server answered: text, what it answered, and the feedback given for it (if any)."""

    time: float
    response_id: str | None
    index: int
    text: str
    output: dict[str, Any] | str
    finish_reason: str | None = None
    feedback_label: str | None = None
    feedback_rating: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return self.output.get("label") if isinstance(self.output, dict) else None

    @property
    def score(self) -> float | None:
        return self.output.get("score") if isinstance(self.output, dict) else None


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise MonitorError(f"{path}: no request log here",
                           fix="start the server with `tuneforge serve --workspace DIR` and send it requests, or "
                               "give the workspace it serves with --workspace DIR")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise MonitorError(f"{path}: not a readable request log ({exc})",
                           fix="the file is damaged: move it aside (the server starts a new one) or restore it "
                               "from a backup") from None
    if "requests" not in tables:
        raise MonitorError(f"{path}: SQLite file without a `requests` table; not a tuneforge request log",
                           fix="point --workspace at the folder `tuneforge serve` used") from None
    return db


def _text_of(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, list) and all(isinstance(t, str) for t in item):  # pre-split tokens (NER)
        return " ".join(item)
    if isinstance(item, list):  # chat messages: the last user turn is what the model answered
        users = [m.get("content", "") for m in item if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else ""
    return str(item)


def _feedback(db: sqlite3.Connection) -> dict[tuple[str, int], tuple[Any, Any]]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "feedback" not in tables:
        return {}
    rows = db.execute("SELECT response_id, idx, label, rating FROM feedback ORDER BY id").fetchall()
    return {(r[0], int(r[1])): (r[2], r[3]) for r in rows}  # the latest feedback for an input wins


def read_served(path: str | Path, model: str | list[str], start: float, end: float) -> list[Served]:
    """Every input answered successfully in [start, end) for requests naming `model` (or any of a list: a run's
    folder name and the registered name that follows its `champion` alias), oldest first."""
    path = Path(path)
    names = [model] if isinstance(model, str) else list(model)
    db = _connect(path)
    try:
        columns = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
        rid = "response_id" if "response_id" in columns else "NULL"
        try:
            marks = ", ".join("?" * len(names))
            rows = db.execute(f"SELECT time, {rid}, route, input, output, scores FROM requests WHERE model IN "
                              f"({marks}) AND status = 200 AND time >= ? AND time < ? ORDER BY time, id",
                              (*names, start, end)).fetchall()
            feedback = _feedback(db)
        except sqlite3.DatabaseError as exc:
            raise MonitorError(f"{path}: the request log is damaged ({exc})",
                               fix="move it aside (the server starts a new one) or restore it from a backup") from None
    finally:
        db.close()
    out: list[Served] = []
    for time_, response_id, route, inputs, outputs, scores in rows:
        if inputs is None or outputs is None:
            continue  # logged with --no-log-inputs: metadata only, nothing to compare
        ins, outs = json.loads(inputs), json.loads(outputs)
        extra = json.loads(scores) if scores else None
        if route in ("/v1/chat/completions", "/v1/completions"):
            ins = [ins] if route == "/v1/chat/completions" else ins
            reasons = (extra or {}).get("finish_reason", []) if isinstance(extra, dict) else []
            for i, reply in enumerate(outs):
                fb = feedback.get((response_id, i), (None, None))
                out.append(Served(time_, response_id, i, _text_of(ins[min(i, len(ins) - 1)]), reply,
                                  reasons[i] if i < len(reasons) else None, fb[0], fb[1]))
            continue
        for i, (item, answer) in enumerate(zip(ins, outs, strict=False)):
            fb = feedback.get((response_id, i), (None, None))
            top = extra[i] if isinstance(extra, list) and i < len(extra) else {}
            out.append(Served(time_, response_id, i, _text_of(item), answer, None, fb[0], fb[1], {"top": top}))
    return out


def require_rows(rows: list[Served], path: Path, model: str | list[str], since: str) -> None:
    if not rows:
        raise MonitorError(f"{path}: no answered requests for model {model!r} in the last {since}",
                           fix="send the model traffic first, widen --since, or check the model name "
                               "(`GET /v1/models`)")
