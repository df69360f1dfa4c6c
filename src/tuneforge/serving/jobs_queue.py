"""The persistent queue of fine-tuning jobs: jobs, their events and their checkpoints, in SQLite (default:
WORKSPACE/.tuneforge/jobs.sqlite, WAL) or PostgreSQL (a `postgresql://` URL, psycopg 3), behind one interface.

The server only enqueues and reads; worker processes claim. A claim carries the worker's id and a lease
(`lease_until`) that the worker renews while the job runs; a running job whose lease ran out (its worker died) is
claimed again by the next worker, which resumes it from its last checkpoint. Claims are atomic: on PostgreSQL a
`SELECT ... FOR UPDATE SKIP LOCKED` row lock (workers on several machines never block on, nor take, the same job);
on SQLite a `BEGIN IMMEDIATE` transaction (one writer at a time on one machine). Clocks of machines sharing a
PostgreSQL queue must agree (NTP): leases compare wall-clock times.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
LEASE_S = 30.0  # a worker renews its lease every LEASE_S / 3; a job silent for LEASE_S is claimed again
QUEUE_FILE = "jobs.sqlite"

_JOB_COLUMNS = ("id", "created_at", "status", "model", "org", "request", "fine_tuned_model", "error", "started_at",
                "finished_at", "worker", "lease_until", "control", "attempts", "trained_tokens", "step", "total_steps")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ft_jobs (id TEXT PRIMARY KEY, created_at {real} NOT NULL, status TEXT NOT NULL, "
    "model TEXT NOT NULL, org TEXT NOT NULL, request TEXT NOT NULL, fine_tuned_model TEXT, error TEXT, "
    "started_at {real}, finished_at {real}, worker TEXT, lease_until {real}, control TEXT NOT NULL DEFAULT '', "
    "attempts INTEGER NOT NULL DEFAULT 0, trained_tokens INTEGER, step INTEGER, total_steps INTEGER)",
    "CREATE INDEX IF NOT EXISTS ft_jobs_status ON ft_jobs (status, created_at)",
    "CREATE TABLE IF NOT EXISTS ft_events (seq {serial}, job_id TEXT NOT NULL, created_at {real} NOT NULL, "
    "level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT)",
    "CREATE INDEX IF NOT EXISTS ft_events_job ON ft_events (job_id, seq)",
    "CREATE TABLE IF NOT EXISTS ft_checkpoints (seq {serial}, job_id TEXT NOT NULL, created_at {real} NOT NULL, "
    "step INTEGER NOT NULL, metrics TEXT NOT NULL, model_id TEXT NOT NULL, path TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ft_checkpoints_job ON ft_checkpoints (job_id, seq)",
)


class JobStateError(TuneforgeError):
    """An action the job's status does not allow (cancel a finished job, resume a running one)."""


class JobNotFound(TuneforgeError):
    """No job with that id."""


@dataclass
class JobRecord:
    id: str
    created_at: float
    status: str
    model: str
    org: str
    request: dict[str, Any]  # the create body as validated (hyperparameters, method, files, tuneforge extension)
    fine_tuned_model: str | None = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    lease_until: float | None = None
    control: str = ""  # "", "cancel" or "pause": asked of the worker running the job
    attempts: int = 0  # claims so far (> 1: the job was resumed after a worker died or it was paused)
    trained_tokens: int | None = None
    step: int | None = None  # the last optimiser step its worker finished (progress; the step a cancel stops at)
    total_steps: int | None = None


@dataclass
class JobEvent:
    seq: int
    job_id: str
    created_at: float
    level: str
    message: str
    type: str  # "message" or "metrics"
    data: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"ftevent-{self.seq}"


@dataclass
class JobCheckpoint:
    seq: int
    job_id: str
    created_at: float
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""  # a model id the server answers to (chat.completions with it)
    path: str = ""  # the run folder serving it

    @property
    def id(self) -> str:
        return f"ftckpt-{self.seq}"


def default_queue(workspace: str | Path) -> Path:
    return Path(workspace) / ".tuneforge" / QUEUE_FILE


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


class _Exec:
    """One transaction's statements, written with `?` placeholders (converted for psycopg)."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn, self.postgres = conn, postgres

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cur = self.run(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class JobQueue:
    """Jobs, events and checkpoints of one workspace (SQLite file) or one PostgreSQL database. Thread- and
    process-safe: each thread of each process holds its own connection."""

    def __init__(self, target: str | Path, lease_s: float = LEASE_S) -> None:
        text = str(target)
        self.postgres = is_postgres(text)
        self.url = "postgresql://" + text.split("://", 1)[1] if self.postgres else text.removeprefix("sqlite:///")
        self.lease_s = lease_s
        self._local = threading.local()
        if not self.postgres:
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        real, serial = ("DOUBLE PRECISION", "BIGSERIAL PRIMARY KEY") if self.postgres else \
            ("REAL", "INTEGER PRIMARY KEY AUTOINCREMENT")
        with self._tx(write=True) as db:
            if self.postgres:  # two processes creating the tables at once would race on the catalogue
                db.run("SELECT pg_advisory_xact_lock(4242424242)")
            for statement in _SCHEMA:
                db.run(statement.format(real=real, serial=serial))

    @classmethod
    def open(cls, workspace: str | Path, url: str | None = None, lease_s: float = LEASE_S) -> JobQueue:
        """The workspace's queue: `url` when given (PostgreSQL or a SQLite path), else its SQLite file."""
        return cls(url or default_queue(workspace), lease_s)

    def describe(self) -> str:
        """Where the queue is, with any password hidden."""
        if not self.postgres:
            return self.url
        rest = self.url.split("://", 1)[1]
        creds, at, host = rest.rpartition("@")
        return f"postgresql://{creds.split(':')[0]}@{host}" if at else self.url

    # ---- connections ------------------------------------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise TuneforgeError("a PostgreSQL queue needs psycopg 3",
                                     fix="pip install 'tuneforge[postgres]'") from None
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise TuneforgeError(f"cannot reach the jobs queue at {self.describe()}: {exc}".strip(),
                                     fix="check --queue (postgresql://USER@HOST:PORT/DB) and that the server "
                                         "runs") from None
        else:
            conn = sqlite3.connect(self.url, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[_Exec]:
        conn = self._conn()
        if self.postgres:
            try:
                with conn.transaction():
                    yield _Exec(conn, True)
            except Exception:
                if conn.broken or conn.closed:  # a restarted server: reconnect on the next call
                    self._local.conn = None
                raise
            return
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _Exec(conn, False)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- jobs -------------------------------------------------------------------------------------------
    def add(self, job: JobRecord) -> JobRecord:
        values = _job_values(job)
        with self._tx(write=True) as db:
            db.run(f"INSERT INTO ft_jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                   values)
        return job

    def get(self, job_id: str) -> JobRecord:
        with self._tx() as db:
            rows = db.rows("SELECT * FROM ft_jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFound(f"no fine-tuning job {job_id!r}", fix="see GET /v1/fine_tuning/jobs")
        return _job(rows[0])

    def list(self, after: str | None = None, limit: int = 20) -> tuple[list[JobRecord], bool]:
        """Newest first; `after` is the last job id of the previous page. Returns (page, has_more)."""
        with self._tx() as db:
            if after:
                cursor = db.rows("SELECT created_at FROM ft_jobs WHERE id = ?", (after,))
                if not cursor:
                    raise JobNotFound(f"no fine-tuning job {after!r} (the `after` cursor)",
                                      fix="pass the id of the last job of the previous page")
                rows = db.rows("SELECT * FROM ft_jobs WHERE created_at < ? OR (created_at = ? AND id < ?) "
                               "ORDER BY created_at DESC, id DESC LIMIT ?",
                               (cursor[0]["created_at"], cursor[0]["created_at"], after, limit + 1))
            else:
                rows = db.rows("SELECT * FROM ft_jobs ORDER BY created_at DESC, id DESC LIMIT ?", (limit + 1,))
        return [_job(r) for r in rows[:limit]], len(rows) > limit

    def update(self, job_id: str, held_by: str | None = None, **fields: Any) -> bool:
        """Set fields of a job; with `held_by`, only while that worker holds the claim. True when a row changed."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = tuple(_encode(k, v) for k, v in fields.items())
        guard, extra = (" AND worker = ?", (held_by,)) if held_by else ("", ())
        with self._tx(write=True) as db:
            return db.run(f"UPDATE ft_jobs SET {sets} WHERE id = ?{guard}", (*values, job_id, *extra)).rowcount == 1

    def request(self, job_id: str, action: str) -> JobRecord:
        """cancel | pause | resume, as the job's status allows: a job no worker holds changes at once; a running
        job gets the request in `control`, which its worker reads every training step."""
        now = time.time()
        with self._tx(write=True) as db:
            rows = db.rows("SELECT * FROM ft_jobs WHERE id = ?" + (" FOR UPDATE" if self.postgres else ""),
                           (job_id,))
            if not rows:
                raise JobNotFound(f"no fine-tuning job {job_id!r}", fix="see GET /v1/fine_tuning/jobs")
            job = _job(rows[0])
            change = _transition(job, action, now)
            sets = ", ".join(f"{k} = ?" for k in change)
            db.run(f"UPDATE ft_jobs SET {sets} WHERE id = ?", (*(_encode(k, v) for k, v in change.items()), job_id))
        for key, value in change.items():
            setattr(job, key, value)
        return job

    # ---- workers ----------------------------------------------------------------------------------------
    def claim(self, worker: str, alive: Callable[[str], bool] | None = None) -> JobRecord | None:
        """The oldest queued job, or a running one whose lease ran out (or whose worker `alive` says is dead),
        now held by `worker`; None when there is none."""
        now = time.time()
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        with self._tx(write=True) as db:
            if alive is not None:
                for row in db.rows("SELECT id, worker FROM ft_jobs WHERE status = 'running' AND lease_until >= ?"
                                   + lock, (now,)):
                    if row["worker"] and not alive(row["worker"]):
                        db.run("UPDATE ft_jobs SET lease_until = ? WHERE id = ?", (now - 1, row["id"]))
            rows = db.rows("SELECT * FROM ft_jobs WHERE status = 'queued' OR (status = 'running' AND "
                           "lease_until < ?) ORDER BY created_at, id LIMIT 1" + lock, (now,))
            if not rows:
                return None
            job = _job(rows[0])
            db.run("UPDATE ft_jobs SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1, "
                   "started_at = COALESCE(started_at, ?) WHERE id = ?", (worker, now + self.lease_s, now, job.id))
        job.status, job.worker, job.lease_until, job.attempts = "running", worker, now + self.lease_s, job.attempts + 1
        job.started_at = job.started_at or now
        return job

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Renew the lease; False when the job is no longer this worker's (it must stop training it)."""
        with self._tx(write=True) as db:
            return db.run("UPDATE ft_jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                          (time.time() + self.lease_s, job_id, worker)).rowcount == 1

    def control(self, job_id: str, worker: str) -> str:
        """What the worker holding a job must do now: "" (train on), "cancel", "pause", or "lost" (the job is not
        its own any more). Cheap: read every training step."""
        with self._tx() as db:
            rows = db.rows("SELECT status, worker, control FROM ft_jobs WHERE id = ?", (job_id,))
        if not rows or rows[0]["worker"] != worker or rows[0]["status"] != "running":
            return "lost"
        return rows[0]["control"] or ""

    def progress(self, job_id: str, worker: str, step: int, total_steps: int) -> str:
        """Record the step a worker has finished and return `control(...)` for it, in one transaction: every
        training step calls this, so a cancel stored after it is seen at the end of the next step."""
        with self._tx(write=True) as db:
            db.run("UPDATE ft_jobs SET step = ?, total_steps = ? WHERE id = ? AND worker = ? AND status = 'running'",
                   (step, total_steps, job_id, worker))
            rows = db.rows("SELECT status, worker, control FROM ft_jobs WHERE id = ?", (job_id,))
        if not rows or rows[0]["worker"] != worker or rows[0]["status"] != "running":
            return "lost"
        return rows[0]["control"] or ""

    # ---- events and checkpoints -------------------------------------------------------------------------
    def add_event(self, job_id: str, message: str, level: str = "info", type_: str = "message",
                  data: dict[str, Any] | None = None) -> None:
        with self._tx(write=True) as db:
            db.run("INSERT INTO ft_events (job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?)",
                   (job_id, time.time(), level, message, type_, json.dumps(data) if data is not None else None))

    def events(self, job_id: str, after: str | None = None, limit: int = 20) -> tuple[list[JobEvent], bool]:
        """Newest first; `after` is the last event id of the previous page."""
        rows = self._page("ft_events", job_id, after, "ftevent-", limit)
        return [JobEvent(r["seq"], r["job_id"], r["created_at"], r["level"], r["message"], r["type"],
                         json.loads(r["data"]) if r["data"] else None) for r in rows[:limit]], len(rows) > limit

    def add_checkpoint(self, job_id: str, step: int, metrics: dict[str, Any], model_id: str, path: str) -> None:
        with self._tx(write=True) as db:
            db.run("INSERT INTO ft_checkpoints (job_id, created_at, step, metrics, model_id, path) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (job_id, time.time(), step, json.dumps(metrics), model_id, path))

    def checkpoints(self, job_id: str, after: str | None = None, limit: int = 10) -> tuple[list[JobCheckpoint], bool]:
        rows = self._page("ft_checkpoints", job_id, after, "ftckpt-", limit)
        return [JobCheckpoint(r["seq"], r["job_id"], r["created_at"], r["step"], json.loads(r["metrics"]),
                              r["model_id"], r["path"]) for r in rows[:limit]], len(rows) > limit

    def _page(self, table: str, job_id: str, after: str | None, prefix: str, limit: int) -> list[dict[str, Any]]:
        below = None
        if after:
            if not after.startswith(prefix) or not after[len(prefix):].isdigit():
                raise JobStateError(f"`after` must be an id like {prefix}12 from the previous page, not {after!r}")
            below = int(after[len(prefix):])
        with self._tx() as db:
            if below is None:
                return db.rows(f"SELECT * FROM {table} WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
                               (job_id, limit + 1))
            return db.rows(f"SELECT * FROM {table} WHERE job_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                           (job_id, below, limit + 1))


def _transition(job: JobRecord, action: str, now: float) -> dict[str, Any]:
    """The fields an action changes, or JobStateError when the status does not allow it."""
    idle = job.status in ("validating_files", "queued", "paused")
    if action == "cancel" and idle:
        return {"status": "cancelled", "finished_at": now, "control": ""}
    if action == "cancel" and job.status == "running":
        return {"control": "cancel"}
    if action == "pause" and job.status in ("validating_files", "queued"):
        return {"status": "paused"}
    if action == "pause" and job.status == "running" and job.control != "cancel":
        return {"control": "pause"}
    if action == "resume" and job.status == "paused":
        return {"status": "queued", "control": ""}
    if action == "resume" and job.status == "running" and job.control == "pause":
        return {"control": ""}
    if action not in ("cancel", "pause", "resume"):
        raise ValueError(f"unknown action {action!r}")
    raise JobStateError(f"cannot {action} job {job.id}: it is {job.status}"
                        + (f" (a {job.control} is already pending)" if job.control else ""))


def _encode(column: str, value: Any) -> Any:
    return json.dumps(value) if column in ("request", "error") and value is not None else value


def _job_values(job: JobRecord) -> tuple[Any, ...]:
    return tuple(_encode(c, getattr(job, c)) for c in _JOB_COLUMNS)


def _job(row: dict[str, Any]) -> JobRecord:
    fields = {c: row[c] for c in _JOB_COLUMNS}
    fields["request"] = json.loads(fields["request"])
    fields["error"] = json.loads(fields["error"]) if fields["error"] else None
    return JobRecord(**fields)
