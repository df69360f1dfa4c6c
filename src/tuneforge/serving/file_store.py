"""Uploaded training files: bytes under WORKSPACE/.tuneforge/files/, metadata in WORKSPACE/.tuneforge/files.sqlite.

A file is stored under its generated id (`file-<24 hex>`) plus the extension that tells its format (`.jsonl`
unless the client's filename ends in another format tuneforge reads), so `path_of(id)` can go straight into a
run config's `data.train` with `data.format: auto`. The client's filename is metadata only: control characters
are stripped and the length capped, and it never becomes part of a path, so `../../x` writes nothing outside the
store. Each upload is validated once, at creation, by the data layer (data/validate.py): status `processed`, or
`error` with every bad line and its fix in `status_details`.

Safe to use from several threads and processes (the server's routes, the jobs worker): each call opens its own
SQLite connection, and bytes are written to a temp file and renamed before their row is committed.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneforge.data.sources import known_extensions
from tuneforge.data.validate import check_file
from tuneforge.errors import TuneforgeError
from tuneforge.registry.files import write_bytes
from tuneforge.serving.protocol_files import PURPOSES, FileObject

FILES_DIR = Path(".tuneforge") / "files"
DB_FILE = Path(".tuneforge") / "files.sqlite"
MAX_FILENAME = 255
_GZIP_READABLE = (".jsonl", ".ndjson", ".csv", ".tsv", ".conll")
_UPLOAD_FIX = "upload it with POST /v1/files (client.files.create(file=..., purpose='fine-tune')) and use its id"
_SCHEMA = """CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL, status TEXT NOT NULL,
    status_details TEXT, format TEXT, task TEXT, records INTEGER, stored_name TEXT NOT NULL)"""
_FIELDS = ("id", "bytes", "created_at", "filename", "purpose", "status", "status_details", "format", "task", "records")
_COLUMNS = ", ".join(_FIELDS)


class FileStoreError(TuneforgeError):
    """A files-API request that cannot be done (bad purpose, bad cursor)."""

    def __init__(self, message: str, *, param: str | None = None, fix: str | None = None) -> None:
        self.param = param
        super().__init__(message, fix=fix)


class UnknownFile(FileStoreError):
    """No file with this id in the workspace's store (the server answers 404)."""

    def __init__(self, file_id: str, param: str | None = None) -> None:
        self.file_id = file_id
        super().__init__(f"no file {file_id!r} in this workspace's file store", param=param, fix=_UPLOAD_FIX)


class FileNotUsable(FileStoreError):
    """The file exists but failed validation, so no run can train on it."""

    def __init__(self, file: FileObject, param: str | None = None) -> None:
        self.file_id = file.id
        super().__init__(f"file {file.id!r} ({file.filename}) has status {file.status!r}: {file.status_details}",
                         param=param, fix="fix those lines and upload the file again")


def clean_filename(name: str | None) -> str:
    """The client's filename as metadata: control characters dropped, at most MAX_FILENAME characters."""
    text = "".join(ch for ch in (name or "") if unicodedata.category(ch)[0] != "C").strip()
    return text[:MAX_FILENAME] or "upload"


def _extension(filename: str) -> str:
    """The stored file's extension: the client's, when it names a format tuneforge reads; else .jsonl (OpenAI's
    fine-tuning files are JSONL). Only this fixed set of extensions ever reaches the path."""
    suffixes = [x.lower() for x in Path(filename.replace("\\", "/")).suffixes]
    if len(suffixes) > 1 and suffixes[-1] == ".gz" and suffixes[-2] in _GZIP_READABLE:  # the readers gunzip these
        return suffixes[-2] + ".gz"
    return suffixes[-1] if suffixes and suffixes[-1] in known_extensions() else ".jsonl"


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class FileStore:
    def __init__(self, workspace: str | Path) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / FILES_DIR
        self.db_path = self.workspace / DB_FILE

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            conn.execute(_SCHEMA)
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    # ---- writing ----------------------------------------------------------------------------------------
    def create(self, filename: str | None, purpose: str, data: bytes) -> FileObject:
        """Store `data` under a new id, validate it, and return its file object (status processed or error)."""
        if purpose not in PURPOSES:
            raise FileStoreError(f"purpose {purpose!r} is not supported; tuneforge stores training files only",
                                 param="purpose", fix="send purpose=fine-tune")
        name = clean_filename(filename)
        file_id = new_file_id()
        stored = self._write(file_id + _extension(name), data)
        try:
            check = check_file(stored, name=name)
            status, details = ("processed", None) if check.ok else ("error", check.summary())
            obj = FileObject(id=file_id, bytes=len(data), created_at=int(time.time()), filename=name,
                             purpose=purpose, status=status, status_details=details, format=check.format,
                             task=check.task, records=check.records)
            with self._db() as conn:
                conn.execute(f"INSERT INTO files ({_COLUMNS}, stored_name) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (*(getattr(obj, f) for f in _FIELDS), stored.name))
        except BaseException:
            stored.unlink(missing_ok=True)
            raise
        return obj

    def _write(self, stored_name: str, data: bytes) -> Path:
        return write_bytes(self.root / stored_name, data)  # atomic: a kill never leaves half an upload

    def delete(self, file_id: str) -> None:
        with self._db() as conn:
            row = conn.execute("SELECT stored_name FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise UnknownFile(file_id)
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        (self.root / row[0]).unlink(missing_ok=True)

    # ---- reading ----------------------------------------------------------------------------------------
    def get(self, file_id: str, param: str | None = None) -> FileObject:
        """The file object; UnknownFile (naming `param`, e.g. 'training_file', when given) if there is none."""
        with self._db() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise UnknownFile(file_id, param)
        return FileObject(**dict(zip(_FIELDS, row, strict=True)))

    def list(self, after: str | None = None, limit: int = 20, order: str = "desc",
             purpose: str | None = None) -> tuple[list[FileObject], bool]:
        """Up to `limit` files after the file `after` in `order` (desc: newest first, as OpenAI lists them),
        and whether more follow."""
        if order not in ("asc", "desc"):
            raise FileStoreError(f"order {order!r} is not asc or desc", param="order", fix="send asc or desc")
        compare, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        where, args = ["1 = 1"], []
        with self._db() as conn:
            if after is not None:
                row = conn.execute("SELECT seq FROM files WHERE id = ?", (after,)).fetchone()
                if row is None:
                    raise UnknownFile(after, "after")
                where.append(f"seq {compare} ?")
                args.append(row[0])
            if purpose is not None:
                where.append("purpose = ?")
                args.append(purpose)
            rows = conn.execute(f"SELECT {_COLUMNS} FROM files WHERE {' AND '.join(where)} ORDER BY seq {direction} "
                                "LIMIT ?", (*args, limit + 1)).fetchall()
        files = [FileObject(**dict(zip(_FIELDS, r, strict=True))) for r in rows[:limit]]
        return files, len(rows) > limit

    def path_of(self, file_id: str, param: str | None = None) -> Path:
        """The stored file (what a run trains on); UnknownFile naming the id and the fix when there is none."""
        with self._db() as conn:
            row = conn.execute("SELECT stored_name FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None or not (self.root / row[0]).is_file():
            raise UnknownFile(file_id, param)
        return self.root / row[0]

    def content(self, file_id: str) -> bytes:
        return self.path_of(file_id).read_bytes()

    def is_usable(self, file_id: str) -> bool:
        """Whether the file exists and passed validation (status processed)."""
        try:
            return self.get(file_id).status == "processed"
        except UnknownFile:
            return False

    def require_usable(self, file_id: str, param: str | None = None) -> FileObject:
        """The file object of a file a run may train on; UnknownFile or FileNotUsable (naming `param`) if not."""
        obj = self.get(file_id, param)
        if obj.status != "processed":
            raise FileNotUsable(obj, param)
        return obj
