"""API keys: shown once at creation, stored only as an HMAC-SHA256 of the key under a per-store secret salt.

Keys are 32 random bytes, so a keyed hash is enough (a slow KDF protects guessable passwords, not random keys);
the salt lives in the same SQLite file, so a copied table of hashes cannot be checked against keys elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import TuneforgeError

SCOPES = ("inference", "jobs", "admin")
# Each scope includes the ones before it: a `jobs` key may also call the model routes; `admin` may do everything
# (manage keys, promote models). The dashboard asks for the same scope as the API route behind each page.
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}


def allows(held: str, needed: str) -> bool:
    """Whether a key of scope `held` may call a route that needs `needed`."""
    if needed not in _RANK:
        raise ValueError(f"unknown scope {needed!r}")
    return _RANK.get(held, -1) >= _RANK[needed]
STORE_FILE = "serve_keys.sqlite"
KEY_PREFIX = "tf-"


class KeyStoreError(TuneforgeError):
    """A key operation the user asked for cannot be done (unknown key, bad scope)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scope: str
    created: float
    revoked: bool
    rate_limit: int | None  # requests per minute; None: the server's default


def store_path(workspace: str | Path) -> Path:
    return Path(workspace) / ".tuneforge" / STORE_FILE


class KeyStore:
    """The keys of one workspace (one SQLite file). Safe to open from several threads (one connection each)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                       "scope TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created REAL NOT NULL, "
                       "revoked INTEGER NOT NULL DEFAULT 0, rate_limit INTEGER)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (secrets.token_hex(32),))
            self._salt = bytes.fromhex(db.execute("SELECT v FROM meta WHERE k = 'salt'").fetchone()[0])

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _hash(self, secret: str) -> str:
        return hmac.new(self._salt, secret.encode(), hashlib.sha256).hexdigest()

    def create(self, name: str, scope: str = "inference", rate_limit: int | None = None) -> tuple[ApiKey, str]:
        """A new key; the returned secret is never stored and cannot be shown again."""
        if scope not in SCOPES:
            raise KeyStoreError(f"unknown scope {scope!r}", fix=f"use one of {', '.join(SCOPES)}")
        if not name.strip():
            raise KeyStoreError("a key needs a name", fix="tuneforge keys create --name my-app")
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        created = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, 0, ?)",
                       (key_id, name, scope, self._hash(secret), created, rate_limit))
        return ApiKey(key_id, name, scope, created, False, rate_limit), secret

    def verify(self, secret: str) -> ApiKey | None:
        """The key record for a presented secret, or None when unknown or revoked (compared as hashes)."""
        with self._connect() as db:
            row = db.execute("SELECT key_id, name, scope, created, revoked, rate_limit FROM keys WHERE hash = ?",
                             (self._hash(secret),)).fetchone()
        if row is None or row[4]:
            return None
        return ApiKey(row[0], row[1], row[2], row[3], bool(row[4]), row[5])

    def list(self) -> list[ApiKey]:
        with self._connect() as db:
            rows = db.execute("SELECT key_id, name, scope, created, revoked, rate_limit FROM keys "
                              "ORDER BY created").fetchall()
        return [ApiKey(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def revoke(self, key_id_or_name: str) -> list[ApiKey]:
        """Revoke by key id or by name (every key of that name); takes effect on the next request."""
        with self._connect() as db:
            hit = db.execute("UPDATE keys SET revoked = 1 WHERE (key_id = ? OR name = ?) AND revoked = 0",
                             (key_id_or_name, key_id_or_name)).rowcount
        if not hit:
            raise KeyStoreError(f"no active key with id or name {key_id_or_name!r}", fix="see `tuneforge keys list`")
        return [k for k in self.list() if key_id_or_name in (k.key_id, k.name)]
