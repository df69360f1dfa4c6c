"""What the server holds while it runs (settings, engine, keys, request log, rate limits) and its error type: apart
from the app factory so that route modules can use them without importing the app."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from tuneforge.serving.engine import Engine, Limits
from tuneforge.serving.keys import ApiKey, KeyStore, allows, store_path
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.model_pool import discover_runs
from tuneforge.serving.request_log import RequestLog, RequestRecord, log_path

log = logging.getLogger("tuneforge.serve")
ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/classify", "/health",
          "/metrics")


@dataclass(frozen=True)
class ServeSettings:
    workspace: Path = Path("runs")
    runs: tuple[str, ...] = ()
    max_adapters: int = 8
    max_batch: int = 8
    batch_window_ms: float = 10.0
    rate_limit: int = 600  # requests per minute per key (a key may carry its own)
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 100 << 20  # POST /v1/files (training files); every other route: max_body_bytes
    cors_origins: tuple[str, ...] = ()
    log_inputs: bool = True
    redact_pii: bool = True
    retention_days: float | None = 30.0
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    jobs_queue: str | None = None  # fine-tuning jobs queue URL (PostgreSQL); None: the workspace's SQLite file
    champion_check_s: float = 2.0  # how often registered names re-read their `champion` alias (serving/champion.py)


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class RateLimiter:
    """A token bucket per key: `per_minute` requests of burst, refilled evenly over the minute."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, per_minute: int) -> float:
        """0 when the request may go; else seconds until it may (the Retry-After)."""
        rate = per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - then) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / rate


class ServingState:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.engine = Engine(discover_runs(settings.workspace, list(settings.runs)),
                             max_adapters=settings.max_adapters, max_batch=settings.max_batch,
                             batch_window_ms=settings.batch_window_ms, device=settings.device,
                             limits=settings.limits, metrics=self.metrics)
        self.keys = KeyStore(store_path(settings.workspace))
        self.request_log = RequestLog(log_path(settings.workspace), log_inputs=settings.log_inputs,
                                      redact_pii=settings.redact_pii, retention_days=settings.retention_days)
        self.limiter = RateLimiter()
        self._last_scan = time.monotonic()
        from tuneforge.serving.champion import ChampionFollower

        self.champions = ChampionFollower(settings.workspace, settings.champion_check_s)

    def find_new_runs(self) -> None:
        """Pick up runs that finished in the workspace since start-up (at most one scan a second; only when the
        server was not started with an explicit list of runs)."""
        now = time.monotonic()
        if self.settings.runs or now - self._last_scan < 1.0:
            return
        self._last_scan = now
        known = frozenset(run.path.name for run in self.engine.runs.values())  # folder names (jobs' runs: ft: ids)
        for run in discover_runs(self.settings.workspace, known=known).values():
            self.engine.pool.add(run)

    def follow_champions(self) -> None:
        """Registered model names answer with their `champion` alias's run (re-read every few seconds)."""
        self.champions.refresh(self.engine.pool)

    def authenticate(self, request: Request, scope: str = "inference", secret: str | None = None) -> ApiKey:
        """The caller's key (Bearer header, or `secret` from a dashboard session), checked for `scope` and rate."""
        if secret is None:
            scheme, _, secret = request.headers.get("authorization", "").partition(" ")
            secret = secret.strip() if scheme.lower() == "bearer" else ""
        key = self.keys.verify(secret) if secret else None
        if key is None:
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY); create one with "
                                "`tuneforge keys create --name NAME`", "invalid_request_error", code="invalid_api_key")
        request.state.key_id = key.key_id
        if not allows(key.scope, scope):
            raise ApiError(403, f"this key has scope {key.scope!r}; this route needs {scope!r}",
                           "permission_error", code="insufficient_scope",
                           param=None)
        wait = self.limiter.check(key.key_id, key.rate_limit or self.settings.rate_limit)
        if wait > 0:
            raise ApiError(429, f"rate limit of {key.rate_limit or self.settings.rate_limit} requests per minute "
                                "reached for this key", "rate_limit_exceeded", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return key

    def log_error(self, request: Request, status: int, message: str) -> None:
        self.request_log.write(RequestRecord(route=route_label(request.scope), status=status,
                                             key_id=getattr(request.state, "key_id", None), error=message))


def route_label(scope: dict[str, Any]) -> str:
    path = scope.get("path", "")
    return path if path in ROUTES else "other"
