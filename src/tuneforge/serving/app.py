"""The FastAPI app: settings, API-key auth, per-key rate limits, a body-size limit, JSON errors, metrics.

Every error leaves as OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with a 4xx status; a 5xx
means a bug in tuneforge (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import TuneforgeError
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.request_log import RequestLog, RequestRecord
from tuneforge.serving.state import ApiError, RateLimiter, ServeSettings, ServingState, route_label

__all__ = ["RateLimiter", "ServeSettings", "create_app"]

log = logging.getLogger("tuneforge.serve")


class LimitsMiddleware:
    """Pure ASGI: refuses bodies over the limit (413) before the app reads them, and times every response."""

    def __init__(self, app: Any, max_body_bytes: int, metrics: Metrics, request_log: RequestLog,
                 max_upload_bytes: int | None = None) -> None:
        self.app, self.max_body_bytes, self.metrics, self.request_log = app, max_body_bytes, metrics, request_log
        self.max_upload_bytes = max_upload_bytes or max_body_bytes  # POST /v1/files: training files are larger

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]
        route = route_label(scope)

        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_request(route, status[0], time.perf_counter() - start)

        upload = scope.get("method") == "POST" and scope.get("path") in ("/v1/files", "/ui/launch")  # + dashboard form
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        body = await self._read_body(scope, receive, limit)
        if body is None:
            too_big = ApiError(413, f"request body over {limit} bytes", code="request_too_large")
            # refused before auth, so the entry has no key id
            self.request_log.write(RequestRecord(route=route, status=413, error=too_big.message))
            await too_big.response()(scope, receive, timed_send)
            return
        replayed = [False]

        async def replay() -> dict[str, Any]:
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, timed_send)

    async def _read_body(self, scope: dict[str, Any], receive: Any, limit: int) -> bytes | None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)


def _install_error_handlers(app: FastAPI, state: ServingState) -> None:
    def answer(request: Request, err: ApiError) -> JSONResponse:
        state.log_error(request, err.status, err.message)
        return err.response()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return answer(request, ApiError(400, f"the body is not valid JSON ({first.get('msg')})",
                                            code="invalid_json"))
        where = ".".join(loc) or "body"
        return answer(request, ApiError(400, f"{where}: {first.get('msg')}", param=where or None,
                                        code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return answer(request, ApiError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(TuneforgeError)
    async def user_error(request: Request, exc: TuneforgeError) -> JSONResponse:
        return answer(request, ApiError(400, str(exc), code="invalid_request"))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return answer(request, ApiError(500, "internal server error (see the server log)", "server_error"))


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for one workspace; the engine's worker starts with the app and stops with it."""
    from tuneforge.serving.routes_inference import public_router, router

    state = ServingState(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.engine.start()
        try:
            yield
        finally:
            state.engine.stop()
            state.request_log.close()

    app = FastAPI(title="tuneforge", version="1", lifespan=lifespan,
                  description="OpenAI-compatible inference over a workspace of tuneforge runs.")
    app.state.serving = state
    _install_error_handlers(app, state)
    app.include_router(public_router)
    app.include_router(router)
    from tuneforge.serving.routes_files import router as files_router  # files API (/v1/files): scope jobs

    app.include_router(files_router)
    from tuneforge.serving.routes_jobs import router as jobs_router  # fine-tuning jobs (serving/routes_jobs.py)

    app.include_router(jobs_router)
    from tuneforge.serving.dashboard import install as install_dashboard  # the pages at `/`

    install_dashboard(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],  # DELETE: /v1/files/{id}
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(LimitsMiddleware, max_body_bytes=settings.max_body_bytes, metrics=state.metrics,
                       request_log=state.request_log, max_upload_bytes=settings.max_upload_bytes)
    return app
