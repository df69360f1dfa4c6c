"""Dashboard log-in: an API key buys a server-side session; the browser holds only an opaque random id.

The cookie is HttpOnly and SameSite=Strict and carries no key material: the key stays in this process's memory,
so a stolen cookie dies with a logout, a restart or the key's revocation (every request re-checks the key through
`ServingState.authenticate`, the same scopes and rate limits as the API). Forms that change state carry the
session's CSRF token; requests with a Bearer key (scripts) need none, having no ambient credential to abuse.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from tuneforge.serving.keys import ApiKey
from tuneforge.serving.state import ApiError, ServingState

SESSION_COOKIE = "tf_session"
LOGIN_COOKIE = "tf_login"  # double-submit token of the login form (there is no session yet to hold one)
IDLE_SECONDS = 12 * 3600


@dataclass
class Session:
    sid: str
    secret: str  # the API key, kept in memory only
    key_id: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)


class SessionStore:
    """Sessions of one server process (a restart logs everyone out, which is the safe direction)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, secret: str, key: ApiKey) -> Session:
        session = Session(secrets.token_urlsafe(32), secret, key.key_id)
        with self._lock:
            self._expire()
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or time.monotonic() - session.seen > self.idle_seconds:
                self._sessions.pop(sid, None)
                return None
            session.seen = time.monotonic()
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._sessions.items() if now - v.seen > self.idle_seconds]:
            del self._sessions[sid]


class LoginRequired(Exception):
    """A page asked for without a (valid) session: the handler redirects to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """An error shown as an HTML page (a too-weak key, an unknown run, a bad form)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Viewer:
    key: ApiKey
    session: Session | None  # None: a Bearer key (no cookie, so no CSRF token needed)

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def sessions(request: Request) -> SessionStore:
    return request.app.state.dashboard_sessions


def require(scope: str, *, page: bool) -> Callable[[Request], Viewer]:
    """A dependency: the session's (or Bearer) key must hold `scope`. Pages answer a missing or dead session with
    a redirect to the login page and a weak key with an HTML 403; JSON endpoints with the API's 401/403 JSON."""

    def check(request: Request) -> Viewer:
        state: ServingState = request.app.state.serving
        session = None
        secret: str | None = None  # None: authenticate reads the Bearer header
        if not request.headers.get("authorization"):
            session = sessions(request).get(request.cookies.get(SESSION_COOKIE))
            secret = session.secret if session else ""
        try:
            key = state.authenticate(request, scope, secret=secret)
        except ApiError as err:
            if err.status == 401 and session is not None:
                sessions(request).drop(session.sid)  # the key was revoked: the session goes with it
            if not page:
                raise
            if err.status == 401:
                raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else "")) \
                    from None
            raise PageError(err.status, err.message, err.headers) from None
        return Viewer(key, session)

    return check


def check_csrf(viewer: Viewer, token: str | None, *, page: bool) -> None:
    """A state-changing request from a session must carry that session's token (form field or X-CSRF-Token)."""
    if viewer.session is None:
        return
    if token and hmac.compare_digest(token, viewer.session.csrf):
        return
    message = "the form's CSRF token is missing or stale; reload the page and try again"
    if page:
        raise PageError(403, message)
    raise ApiError(403, message, "permission_error", code="csrf_failed")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never //host or a full URL)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"
