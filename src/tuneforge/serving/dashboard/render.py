"""Server-side HTML: Jinja2 templates with autoescaping on (every run name, label and log line is escaped), and the
headers every dashboard page carries (a CSP that allows only this server's own scripts and styles, no caching)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse

HERE = Path(__file__).parent
# Only our own files: no CDN, no inline script; data: images for the embedded report's figures.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
# report.html is a self-contained page with inline styles and data: images; it may run nothing.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
              "base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                    "Cache-Control": "no-store"}


@lru_cache(maxsize=1)
def environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["seg"] = lambda value: quote(str(value), safe="")  # one URL path segment or query value
    env.filters["num"] = _num
    return env


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def render(request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    viewer = context.get("viewer")
    page = environment().get_template(template).render(
        request_path=request.url.path, csrf=viewer.csrf if viewer else "", **context)
    return HTMLResponse(page, status_code=status,
                        headers={"Content-Security-Policy": PAGE_CSP, **SECURITY_HEADERS, **(headers or {})})
