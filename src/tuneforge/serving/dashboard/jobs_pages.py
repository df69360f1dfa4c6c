"""Dashboard pages for fine-tuning jobs (scope `jobs`, as /v1/fine_tuning/jobs): the list, one job with its
events and live curve, cancel/pause/resume, and the launch form (upload a file, pick a base model, method, epochs).

The form goes through the same Python APIs as the HTTP routes: `FileStore.create` (validated by the data layer) and
`JobsService.create` (a job that cannot work is refused with the field named, never queued)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from tuneforge.errors import TuneforgeError
from tuneforge.serving.dashboard.render import render
from tuneforge.serving.dashboard.sessions import PageError, Viewer, check_csrf, require
from tuneforge.serving.jobs_queue import TERMINAL, JobEvent, JobNotFound, JobRecord, JobStateError
from tuneforge.serving.routes_jobs import jobs_service, serve_if_finished
from tuneforge.serving.state import ApiError

router = APIRouter(include_in_schema=False)
jobs_page = require("jobs", page=True)
jobs_json = require("jobs", page=False)
ACTIONS = ("cancel", "pause", "resume")
METHODS = ("full", "lora", "qlora", "dora", "ia3", "freeze")  # tuneforge methods the form offers


def _workspace(request: Request) -> Path:
    return Path(request.app.state.serving.settings.workspace)


def _job(request: Request, job_id: str) -> JobRecord:
    try:
        return jobs_service(request).get(job_id)
    except JobNotFound:
        raise PageError(404, f"there is no job {job_id!r}") from None


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if stamp else "-"


def _run_of(request: Request, job: JobRecord) -> str | None:
    """The job's run folder name once its worker has written the config (the curves come from there)."""
    folder = _workspace(request) / job.id
    return job.id if (folder / "config.yaml").is_file() else None


@router.get("/ui/jobs", response_class=HTMLResponse)
async def jobs_list(request: Request, viewer: Viewer = Depends(jobs_page)) -> HTMLResponse:
    jobs, more = await asyncio.to_thread(jobs_service(request).list, None, 100)
    return render(request, "jobs.html", viewer=viewer, jobs=jobs, more=more, when=_when)


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str, viewer: Viewer = Depends(jobs_page)) -> HTMLResponse:
    job = await asyncio.to_thread(_job, request, job_id)
    checkpoints, _ = await asyncio.to_thread(jobs_service(request).checkpoints, job_id, None, 100)
    return render(request, "job.html", viewer=viewer, job=job, checkpoints=checkpoints, when=_when,
                  request_json=json.dumps(job.request, indent=2, sort_keys=True), terminal=job.status in TERMINAL)


def _events(request: Request, job_id: str) -> list[JobEvent]:
    events, _ = jobs_service(request).events(job_id, None, 1000)
    return list(reversed(events))  # oldest first, as a log reads


@router.get("/ui/api/jobs/{job_id}")
async def job_json(request: Request, job_id: str, viewer: Viewer = Depends(jobs_json)) -> dict[str, Any]:
    try:
        job = await asyncio.to_thread(jobs_service(request).get, job_id)
    except JobNotFound:
        raise ApiError(404, f"there is no job {job_id!r}", code="job_not_found") from None
    serve_if_finished(request.app.state.serving, job)
    events = await asyncio.to_thread(_events, request, job_id)
    points: dict[str, dict[int, float]] = {"train_loss": {}, "valid_loss": {}}
    for event in events:
        data = event.data or {}
        for key in points:
            if event.type == "metrics" and isinstance(data.get(key), int | float):
                points[key][int(data["step"])] = float(data[key])
    return {"id": job.id, "status": job.status, "fine_tuned_model": job.fine_tuned_model, "error": job.error,
            "run": _run_of(request, job),
            "events": [{"created_at": e.created_at, "level": e.level, "message": e.message, "type": e.type}
                       for e in events[-200:]],
            "points": {k: sorted(v.items()) for k, v in points.items()}}


@router.post("/ui/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: str, action: str, viewer: Viewer = Depends(jobs_page)) -> Any:
    from tuneforge.serving.dashboard.pages import form_fields

    check_csrf(viewer, (await form_fields(request)).get("csrf"), page=True)
    if action not in ACTIONS:
        raise PageError(404, f"no job action {action!r}")
    try:
        await asyncio.to_thread(getattr(jobs_service(request), action), job_id)
    except JobNotFound:
        raise PageError(404, f"there is no job {job_id!r}") from None
    except JobStateError as exc:
        raise PageError(400, str(exc)) from None
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


# ---- the launch form -------------------------------------------------------------------------------------
def _choices(workspace: Path) -> dict[str, Any]:
    """Base models of the catalogue and the workspace's usable uploaded files (when the Files API is present)."""
    bases: list[str] = ["default"]
    files: list[Any] = []
    try:
        from tuneforge.registry.base_models import list_bases

        bases = sorted({b.name for b in list_bases(workspace)} | {"default"}, key=lambda n: (n == "default", n))
    except ImportError:
        pass
    try:
        from tuneforge.serving.file_store import FileStore

        listed = FileStore(workspace).list(None, 50)
        files = [f for f in (listed[0] if isinstance(listed, tuple) else listed) if f.status == "processed"]
    except ImportError:
        pass
    return {"bases": bases, "files": files, "methods": METHODS}


def _form_page(request: Request, viewer: Viewer, status: int = 200, error: str | None = None,
               values: dict[str, str] | None = None) -> HTMLResponse:
    return render(request, "launch.html", status=status, viewer=viewer, error=error, values=values or {},
                  **_choices(_workspace(request)))


@router.get("/ui/launch", response_class=HTMLResponse)
async def launch_page(request: Request, viewer: Viewer = Depends(jobs_page)) -> HTMLResponse:
    return await asyncio.to_thread(_form_page, request, viewer)


def _body(fields: dict[str, str], file_id: str) -> dict[str, Any]:
    """The OpenAI create body the form describes (+ the tuneforge extension for the method and any JSON given)."""
    kind = fields.get("type") or "supervised"
    hyper: dict[str, Any] = {}
    for field, cast in (("n_epochs", int), ("batch_size", int), ("learning_rate_multiplier", float)):
        raw = (fields.get(field) or "").strip()
        if raw and raw != "auto":
            try:
                hyper[field] = cast(raw)
            except ValueError:
                raise PageError(400, f"{field} must be a number or auto (got {raw!r})") from None
    extension: dict[str, Any] = {}
    if (fields.get("tuneforge") or "").strip():
        try:
            extension = json.loads(fields["tuneforge"])
        except ValueError as exc:
            raise PageError(400, f"the tuneforge extension is not valid JSON: {exc}") from None
        if not isinstance(extension, dict):
            raise PageError(400, "the tuneforge extension must be a JSON object")
    if fields.get("tf_method"):
        extension = {**extension, "method": {**(extension.get("method") or {}), "name": fields["tf_method"]}}
    body: dict[str, Any] = {"model": fields.get("model") or "default", "training_file": file_id,
                            "method": {"type": kind, kind: {"hyperparameters": hyper}}}
    if fields.get("suffix"):
        body["suffix"] = fields["suffix"]
    if extension:
        body["tuneforge"] = extension
    return body


def _create(request: Request, viewer: Viewer, fields: dict[str, str], upload: Any | None) -> str:
    """Store the upload (if any) and create the job; its id, or PageError(400) naming what is wrong."""
    try:
        from tuneforge.serving.file_store import FileStore
    except ImportError:
        raise PageError(503, "the Files API (serving/file_store.py) is not part of this build") from None
    from tuneforge.serving.job_config import org_of

    file_id = fields.get("training_file", "")
    if upload is not None:
        stored = FileStore(_workspace(request)).create(upload[0], "fine-tune", upload[1])
        if stored.status != "processed":
            raise PageError(400, f"the file {upload[0]!r} did not pass validation: {stored.status_details}")
        file_id = stored.id
    if not file_id:
        raise PageError(400, "choose a training file to upload (or one uploaded before)")
    try:
        return jobs_service(request).create(_body(fields, file_id), org_of(viewer.key.name)).id
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PageError(400, f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}") from None
    except TuneforgeError as exc:
        raise PageError(400, str(exc)) from None


@router.post("/ui/launch", response_class=HTMLResponse)
async def launch(request: Request, viewer: Viewer = Depends(jobs_page)) -> Any:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(viewer, fields.get("csrf"), page=True)
    file = form.get("file")
    upload = None
    if file is not None and not isinstance(file, str) and file.filename:
        upload = (file.filename, await file.read())
    try:
        job_id = await asyncio.to_thread(_create, request, viewer, fields, upload)
    except PageError as err:
        return await asyncio.to_thread(_form_page, request, viewer, err.status, err.message, fields)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)
