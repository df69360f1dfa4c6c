"""The request log: one SQLite row per request, committed (WAL, synchronous=FULL) before the response is sent.

Monitoring reads it (drift, curation), so it is apart from routes and engine. Inputs and outputs go through the
data layer's PII redactor unless told not to; with `log_inputs=False` only metadata is kept.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.pii import redact

LOG_FILE = "requests.sqlite"
_PURGE_EVERY_S = 3600.0


@dataclass
class RequestRecord:
    route: str
    status: int
    key_id: str | None = None
    model: str | None = None
    input: Any = None
    output: Any = None
    scores: Any = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    time: float = field(default_factory=time.time)
    response_id: str | None = None  # the `id` the API answered with: what POST /v1/feedback names


FEEDBACK_TABLE = ("CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, "
                  "response_id TEXT NOT NULL, idx INTEGER NOT NULL, label TEXT, rating REAL, key_id TEXT)")


def _add_response_id(db: sqlite3.Connection) -> None:
    """Logs written before feedback existed have no response_id column: add it (old rows keep NULL, stay readable)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "response_id" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN response_id TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS requests_response_id ON requests (response_id)")


def log_path(workspace: str | Path) -> Path:
    return Path(workspace) / ".tuneforge" / LOG_FILE


def _redact_all(value: Any) -> Any:
    """Every string inside a JSON-like value, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_all(v) for k, v in value.items()}
    return value


class RequestLog:
    """Append-only log. One connection guarded by a lock: writes are short and must be durable, not parallel."""

    def __init__(self, path: str | Path, *, log_inputs: bool = True, redact_pii: bool = True,
                 retention_days: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_inputs, self.redact_pii, self.retention_days = log_inputs, redact_pii, retention_days
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged entry survives a crash or power cut
        self._db.execute("CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "time REAL NOT NULL, key_id TEXT, route TEXT NOT NULL, model TEXT, status INTEGER NOT NULL,"
                         " input TEXT, output TEXT, scores TEXT, latency_ms REAL, prompt_tokens INTEGER, "
                         "completion_tokens INTEGER, error TEXT)")
        self._db.execute("CREATE INDEX IF NOT EXISTS requests_time ON requests (time)")
        _add_response_id(self._db)
        self._db.execute(FEEDBACK_TABLE)
        self._db.commit()
        self._last_purge = 0.0
        self.purge()

    def _text(self, value: Any) -> str | None:
        if value is None or not self.log_inputs:
            return None
        value = _redact_all(value) if self.redact_pii else value
        return json.dumps(value, ensure_ascii=False)

    def write(self, rec: RequestRecord) -> None:
        row = (rec.time, rec.key_id, rec.route, rec.model, rec.status, self._text(rec.input), self._text(rec.output),
               self._text(rec.scores), round(rec.latency_ms, 3), rec.prompt_tokens, rec.completion_tokens,
               redact(rec.error) if rec.error and self.redact_pii else rec.error, rec.response_id)
        with self._lock:
            self._db.execute("INSERT INTO requests (time, key_id, route, model, status, input, output, scores, "
                             "latency_ms, prompt_tokens, completion_tokens, error, response_id) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._db.commit()
        if self.retention_days is not None and time.time() - self._last_purge > _PURGE_EVERY_S:
            self.purge()

    def find(self, response_id: str) -> dict[str, Any] | None:
        """The logged entry that answered with `response_id` (model, route, output), or None."""
        with self._lock:
            row = self._db.execute("SELECT model, route, output FROM requests WHERE response_id = ?",
                                   (response_id,)).fetchone()
        if row is None:
            return None
        return {"model": row[0], "route": row[1], "output": json.loads(row[2]) if row[2] else None}

    def write_feedback(self, response_id: str, index: int, label: str | None, rating: float | None,
                       key_id: str | None) -> None:
        """One feedback row (a later one for the same request and input supersedes an earlier one on read)."""
        with self._lock:
            self._db.execute("INSERT INTO feedback (time, response_id, idx, label, rating, key_id) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (time.time(), response_id, index, label, rating, key_id))
            self._db.commit()

    def purge(self) -> int:
        """Delete entries older than the retention period; returns how many went."""
        self._last_purge = time.time()
        if self.retention_days is None:
            return 0
        with self._lock:
            cutoff = time.time() - self.retention_days * 86400
            gone = self._db.execute("DELETE FROM requests WHERE time < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM feedback WHERE time < ?", (cutoff,))
            self._db.commit()
        return gone

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_log(path: str | Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest entries first, with JSON columns decoded (for monitoring and tests)."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM requests ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    finally:
        db.close()
    out = []
    for row in rows:
        entry = dict(row)
        for col in ("input", "output", "scores"):
            entry[col] = json.loads(entry[col]) if entry[col] is not None else None
        out.append(entry)
    return out
