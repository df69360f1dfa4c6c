"""Dashboard pages and the JSON they poll: runs, one run, runs side by side, the playground, the registry, log-in.

Each route names the scope of the API route behind it (`inference` to look at runs and models and to try them);
the jobs pages are in jobs_pages.py (`jobs`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge.serving.dashboard import run_views
from tuneforge.serving.dashboard.render import REPORT_CSP, SECURITY_HEADERS, render
from tuneforge.serving.dashboard.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    PageError,
    Viewer,
    check_csrf,
    require,
    safe_next,
    sessions,
)
from tuneforge.serving.state import ApiError, ServingState

router = APIRouter(include_in_schema=False)
view_page = require("inference", page=True)
view_json = require("inference", page=False)


def _state(request: Request) -> ServingState:
    return request.app.state.serving


def _workspace(request: Request) -> Path:
    return Path(_state(request).settings.workspace)


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value each), parsed here so log-in needs no multipart library."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


# ---- log-in ------------------------------------------------------------------------------------------------
@router.get("/ui/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    import secrets

    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", viewer=None, next=safe_next(next), login_token=token, error=None)
    _set_cookie(request, response, LOGIN_COOKIE, token, path="/ui/login")
    return response


@router.post("/ui/login", response_class=HTMLResponse)
async def login(request: Request) -> Any:
    import hmac

    fields = await form_fields(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    target = safe_next(fields.get("next"))
    if not expected or not hmac.compare_digest(expected, fields.get("login_token", "")):
        raise PageError(403, "the log-in form is stale (or cookies are off); reload the log-in page")
    secret = fields.get("key", "").strip()
    try:
        key = _state(request).authenticate(request, "inference", secret=secret)
    except ApiError as err:
        message = "that API key is not valid (or was revoked)" if err.status == 401 else err.message
        return render(request, "login.html", status=err.status, viewer=None, next=target, login_token=expected,
                      error=message)
    sessions(request).drop(request.cookies.get(SESSION_COOKIE))  # a fresh id at every log-in (no fixation)
    session = sessions(request).create(secret, key)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, session.sid, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/ui/logout")
async def logout(request: Request, viewer: Viewer = Depends(view_page)) -> RedirectResponse:
    check_csrf(viewer, (await form_fields(request)).get("csrf"), page=True)
    if viewer.session is not None:
        sessions(request).drop(viewer.session.sid)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Any, name: str, value: str, path: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path=path,
                        secure=request.url.scheme == "https")


# ---- runs --------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
async def runs_page(request: Request, q: str = "", viewer: Viewer = Depends(view_page)) -> HTMLResponse:
    runs = await asyncio.to_thread(run_views.list_runs, _workspace(request), q)
    return render(request, "runs.html", viewer=viewer, runs=runs, q=q)


@router.get("/ui/api/runs")
async def runs_json(request: Request, q: str = "", viewer: Viewer = Depends(view_json)) -> dict[str, Any]:
    runs = await asyncio.to_thread(run_views.list_runs, _workspace(request), q)
    return {"object": "list", "data": [r.as_dict() for r in runs]}


@router.get("/ui/runs/{name}", response_class=HTMLResponse)
async def run_page(request: Request, name: str, viewer: Viewer = Depends(view_page)) -> HTMLResponse:
    folder = run_views.run_folder(_workspace(request), name)
    info = await asyncio.to_thread(run_views.details, folder)
    others = [r.name for r in run_views.list_runs(_workspace(request)) if r.name != name][:20]
    state = _state(request)
    state.find_new_runs()
    # the model id it is served under: its folder name, or the `ft:` id of the job that made it
    served = next((model for model, run in list(state.engine.runs.items()) if run.path.name == name), None)
    return render(request, "run.html", viewer=viewer, run=info, served=served, others=others,
                  job=name if name.startswith("ftjob-") else None)


@router.get("/ui/api/runs/{name}/curves")
async def curves_json(request: Request, name: str, viewer: Viewer = Depends(view_json)) -> dict[str, Any]:
    try:
        folder = run_views.run_folder(_workspace(request), name)
    except PageError as err:
        raise ApiError(404, err.message, code="run_not_found") from None
    return await asyncio.to_thread(run_views.curves, folder)


@router.get("/ui/runs/{name}/report")
async def report(request: Request, name: str, viewer: Viewer = Depends(view_page)) -> FileResponse:
    path = run_views.run_folder(_workspace(request), name) / "report.html"
    if not path.is_file():
        raise PageError(404, f"run {name!r} has no report yet (it is written when the run finishes)")
    return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP,
                                                               **SECURITY_HEADERS})


@router.get("/ui/runs/{name}/plots/{filename}")
async def plot(request: Request, name: str, filename: str, viewer: Viewer = Depends(view_page)) -> FileResponse:
    path = run_views.plot_file(run_views.run_folder(_workspace(request), name), filename)
    return FileResponse(path, headers=SECURITY_HEADERS)


@router.get("/ui/compare", response_class=HTMLResponse)
async def compare_page(request: Request, viewer: Viewer = Depends(view_page)) -> Any:
    names = [n for n in request.query_params.getlist("run") if n]
    if len(names) < 2:
        runs = run_views.list_runs(_workspace(request))
        return render(request, "compare_pick.html", viewer=viewer, runs=runs)
    folders = [run_views.run_folder(_workspace(request), n) for n in dict.fromkeys(names)]
    if len(folders) < 2:
        raise PageError(400, "pick two different runs to compare")
    infos = await asyncio.to_thread(lambda: [run_views.details(f) for f in folders])
    keys = sorted({k for info in infos for k in info["test"]})
    return render(request, "compare.html", viewer=viewer, runs=infos, keys=keys)


# ---- playground --------------------------------------------------------------------------------------------
class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    messages: list[dict[str, str]] | None = Field(None, max_length=64)
    input: str | None = Field(None, max_length=20_000)
    max_tokens: int = Field(64, ge=1, le=1024)


@router.get("/ui/playground", response_class=HTMLResponse)
async def playground_page(request: Request, model: str = "", viewer: Viewer = Depends(view_page)) -> HTMLResponse:
    state = _state(request)
    state.find_new_runs()
    models = [{"name": n, "task": r.task.name, "generative": r.generative}
              for n, r in sorted(state.engine.runs.items())]
    chosen = model if any(m["name"] == model for m in models) else (models[0]["name"] if models else "")
    return render(request, "playground.html", viewer=viewer, models=models, chosen=chosen)


@router.post("/ui/api/playground")
async def playground(request: Request, viewer: Viewer = Depends(view_json)) -> JSONResponse:
    """One chat turn (generative runs) or one prediction (classifiers, NER), through the server's own routes: the
    same limits, batching and request log as the API."""
    from tuneforge.serving.protocol import ChatCompletionRequest, ClassifyRequest
    from tuneforge.serving.routes_inference import _run, chat_completions, classify

    check_csrf(viewer, request.headers.get("x-csrf-token"), page=False)
    try:
        body = PlaygroundRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(400, f"{where}: {first.get('msg')}", param=where, code="invalid_value") from None
    run = _run(_state(request), body.model)
    if run.generative:
        if not body.messages:
            raise ApiError(400, "a chat needs messages", param="messages", code="invalid_value")
        try:
            chat = ChatCompletionRequest.model_validate({"model": body.model, "messages": body.messages,
                                                         "max_tokens": body.max_tokens})
        except ValidationError as exc:
            raise ApiError(400, f"messages: {exc.errors()[0].get('msg')}", param="messages",
                           code="invalid_value") from None
        answer = await chat_completions(chat, request)
        return JSONResponse({"kind": "chat", "reply": answer.choices[0].message["content"]})
    if not body.input or not body.input.strip():
        raise ApiError(400, "give a text to predict from", param="input", code="invalid_value")
    text: Any = [body.input.split()] if run.task.name == "token_classification" else body.input
    result = await classify(ClassifyRequest(model=body.model, input=text), request)
    return JSONResponse({"kind": "predict", "task": run.task.name,
                         "result": result.data[0].model_dump(exclude_none=True)})


# ---- registry ----------------------------------------------------------------------------------------------
@router.get("/ui/registry", response_class=HTMLResponse)
async def registry_page(request: Request, viewer: Viewer = Depends(view_page)) -> HTMLResponse:
    from tuneforge.serving.dashboard.registry_view import registry

    models = await asyncio.to_thread(registry, _workspace(request))
    return render(request, "registry.html", viewer=viewer, models=models)


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(next_path, safe='')}", status_code=303)
