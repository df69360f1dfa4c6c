"""OpenAI's fine-tuning jobs routes over the jobs queue. The server only enqueues and reads; workers train
(`tuneforge serve --workers N`, or `tuneforge worker` processes elsewhere on a shared PostgreSQL queue).
Every route needs a key of scope `jobs`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request

from tuneforge.serving.job_config import JobInputError, served_as
from tuneforge.serving.jobs_queue import JobNotFound, JobRecord, JobStateError
from tuneforge.serving.jobs_service import JobsService
from tuneforge.serving.protocol_jobs import (
    CheckpointList,
    CreateJobRequest,
    EventList,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobList,
)
from tuneforge.serving.routes_inference import ERRORS, require_scope
from tuneforge.serving.state import ApiError, ServingState

router = APIRouter(prefix="/v1/fine_tuning/jobs", dependencies=[Depends(require_scope("jobs"))], responses=ERRORS)
T = TypeVar("T")


def jobs_service(request: Request) -> JobsService:
    """The app's JobsService (made on first use, on the server's workspace and queue)."""
    app_state = request.app.state
    service = getattr(app_state, "jobs", None)
    if service is None:
        settings = app_state.serving.settings
        service = app_state.jobs = JobsService(settings.workspace, getattr(settings, "jobs_queue", None))
    return service


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Queue calls block (SQLite, PostgreSQL): off the event loop, with the queue's errors as API errors."""
    try:
        return await asyncio.to_thread(fn, *args)
    except JobInputError as exc:
        raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
    except JobNotFound as exc:
        raise ApiError(404, str(exc), code="job_not_found") from None
    except JobStateError as exc:
        raise ApiError(400, str(exc), code="invalid_job_state") from None


def serve_if_finished(state: ServingState, job: JobRecord) -> None:
    """A succeeded job's model is served from the moment a client can learn that it succeeded."""
    name = job.fine_tuned_model
    if job.status != "succeeded" or not name or name in state.engine.runs:
        return
    from tuneforge.errors import TuneforgeError
    from tuneforge.registry.loaded_run import load_run

    with contextlib.suppress(TuneforgeError):  # a run folder removed by hand: the record stays, the model is gone
        state.engine.pool.add(served_as(load_run(state.settings.workspace / job.id), name))


def serve_checkpoints(state: ServingState, ckpts: list[Any]) -> None:
    """Listed checkpoints answer at once to their model ids (their servable run folders, job_checkpoints.py)."""
    from pathlib import Path

    from tuneforge.errors import TuneforgeError
    from tuneforge.registry.loaded_run import load_run

    workspace = Path(state.settings.workspace).resolve()
    for ckpt in ckpts:
        folder = Path(ckpt.path)
        if ckpt.model_id in state.engine.runs or folder.parent.resolve() != workspace:
            continue
        with contextlib.suppress(TuneforgeError):  # removed since (only the newest few are kept)
            state.engine.pool.add(served_as(load_run(folder), ckpt.model_id))


def _org(state: ServingState, key_id: str) -> str:
    from tuneforge.serving.job_config import org_of

    names = [k.name for k in state.keys.list() if k.key_id == key_id]
    return org_of(names[0]) if names else "tuneforge"


@router.post("", response_model=FineTuningJob)
async def create_job(req: CreateJobRequest, request: Request) -> FineTuningJob:
    state: ServingState = request.app.state.serving
    org = await asyncio.to_thread(_org, state, request.state.key_id)
    job = await _call(jobs_service(request).create, req, org)
    return FineTuningJob.of(job)


@router.get("", response_model=JobList)
async def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> JobList:
    jobs, more = await _call(jobs_service(request).list, after, limit)
    for job in jobs:
        serve_if_finished(request.app.state.serving, job)
    return JobList(data=[FineTuningJob.of(j) for j in jobs], has_more=more)


@router.get("/{job_id}", response_model=FineTuningJob)
async def retrieve_job(job_id: str, request: Request) -> FineTuningJob:
    job = await _call(jobs_service(request).get, job_id)
    serve_if_finished(request.app.state.serving, job)
    return FineTuningJob.of(job)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
async def cancel_job(job_id: str, request: Request) -> FineTuningJob:
    return FineTuningJob.of(await _call(jobs_service(request).cancel, job_id))


@router.post("/{job_id}/pause", response_model=FineTuningJob)
async def pause_job(job_id: str, request: Request) -> FineTuningJob:
    return FineTuningJob.of(await _call(jobs_service(request).pause, job_id))


@router.post("/{job_id}/resume", response_model=FineTuningJob)
async def resume_job(job_id: str, request: Request) -> FineTuningJob:
    return FineTuningJob.of(await _call(jobs_service(request).resume, job_id))


@router.get("/{job_id}/events", response_model=EventList)
async def job_events(job_id: str, request: Request, after: str | None = None,
                     limit: int = Query(20, ge=1, le=1000)) -> EventList:
    events, more = await _call(jobs_service(request).events, job_id, after, limit)
    return EventList(data=[FineTuningJobEvent.of(e) for e in events], has_more=more)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
async def job_checkpoints(job_id: str, request: Request, after: str | None = None,
                          limit: int = Query(10, ge=1, le=100)) -> CheckpointList:
    ckpts, more = await _call(jobs_service(request).checkpoints, job_id, after, limit)
    serve_checkpoints(request.app.state.serving, ckpts)
    data = [FineTuningJobCheckpoint.of(c) for c in ckpts]
    return CheckpointList(data=data, has_more=more, first_id=data[0].id if data else None,
                          last_id=data[-1].id if data else None)
