"""The dashboard at `/`: server-rendered pages over the same workspace, keys and engine as the API.

`install(app)` adds its routes, its static files (served by this app: no CDN, no external fonts) and the handlers
that turn a missing session into a redirect to the log-in page and a page error into an HTML page."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from tuneforge.serving.dashboard.render import HERE, SECURITY_HEADERS, render
from tuneforge.serving.dashboard.sessions import LoginRequired, PageError, SessionStore

STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript", "favicon.svg": "image/svg+xml"}


def install(app: Any) -> None:
    from tuneforge.serving.dashboard.pages import login_redirect, router

    app.state.dashboard_sessions = SessionStore()
    app.include_router(router)
    try:
        from tuneforge.serving.dashboard.jobs_pages import router as jobs_router
    except ImportError:  # the jobs queue is not in this build: the rest of the dashboard works without it
        jobs_router = None
    if jobs_router is not None:
        app.include_router(jobs_router)

    @app.get("/ui/static/{filename}", include_in_schema=False)
    async def static(filename: str) -> FileResponse:
        if filename not in STATIC:  # a fixed list: no path ever reaches the file system from the URL
            raise PageError(404, f"no static file {filename!r}")
        return FileResponse(HERE / "static" / filename, media_type=STATIC[filename],
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"})

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> RedirectResponse:
        return login_redirect(exc.next_path)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> HTMLResponse:
        state = request.app.state.serving
        state.log_error(request, exc.status, exc.message)
        return render(request, "error.html", status=exc.status, headers={**SECURITY_HEADERS, **exc.headers},
                      viewer=None, status_code=exc.status, message=exc.message)
