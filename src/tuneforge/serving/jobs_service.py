"""The fine-tuning jobs API in Python: what the routes, `tuneforge jobs` and the dashboard call.

    from tuneforge.serving.jobs_service import JobsService
    jobs = JobsService("runs")                       # or JobsService("runs", "postgresql://...")
    job = jobs.create({"model": "tiny", "training_file": "file-...", "suffix": "support"}, org="acme")
    page, more = jobs.list(limit=20); events, more = jobs.events(job.id); ckpts, _ = jobs.checkpoints(job.id)
    jobs.cancel(job.id); jobs.pause(job.id); jobs.resume(job.id)

Every job is checked when it is created (files exist and passed validation, the base model is known, the
hyperparameters and any tuneforge extension make a valid config): a job that cannot work is refused with a
`JobInputError` naming the field, never queued to fail later.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from tuneforge.serving.job_config import build_config
from tuneforge.serving.jobs_queue import JobCheckpoint, JobEvent, JobQueue, JobRecord


def new_job_id() -> str:
    return f"ftjob-{uuid.uuid4().hex[:24]}"


def _validated(body: Any) -> Any:
    """The create body as the route validates it; a JobInputError naming the first bad field (as the API's 400)."""
    from pydantic import ValidationError

    from tuneforge.serving.job_config import JobInputError
    from tuneforge.serving.protocol_jobs import CreateJobRequest

    try:
        return CreateJobRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise JobInputError(f"{where}: {first.get('msg')}", param=where) from None


class JobsService:
    def __init__(self, workspace: str | Path, queue: str | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.queue = JobQueue.open(self.workspace, queue)

    def create(self, body: Any, org: str = "tuneforge") -> JobRecord:
        """Check and enqueue a job. `body`: the OpenAI create body (a dict or protocol_jobs.CreateJobRequest)."""
        from tuneforge.serving.protocol_jobs import CreateJobRequest

        request = body if isinstance(body, CreateJobRequest) else _validated(body)
        fields = request.model_dump(mode="json", exclude_none=True)
        job_id = new_job_id()
        build_config(self.workspace, job_id, fields)  # refused here (400 naming the field), never queued to fail
        job = self.queue.add(JobRecord(job_id, time.time(), "validating_files", request.model, org, fields))
        self.queue.add_event(job_id, f"Validating training file: {request.training_file}"
                             + (f" and validation file: {request.validation_file}" if request.validation_file
                                else ""))
        self.queue.update(job_id, status="queued")
        self.queue.add_event(job_id, "Files validated, moving job to queued state")
        job.status = "queued"
        return job

    def get(self, job_id: str) -> JobRecord:
        return self.queue.get(job_id)

    def list(self, after: str | None = None, limit: int = 20) -> tuple[list[JobRecord], bool]:
        return self.queue.list(after, limit)

    def events(self, job_id: str, after: str | None = None, limit: int = 20) -> tuple[list[JobEvent], bool]:
        """Newest first (as OpenAI lists them); metrics events carry data.step, train_loss, valid_loss."""
        self.queue.get(job_id)
        return self.queue.events(job_id, after, limit)

    def checkpoints(self, job_id: str, after: str | None = None, limit: int = 10) -> tuple[list[JobCheckpoint], bool]:
        self.queue.get(job_id)
        return self.queue.checkpoints(job_id, after, limit)

    def cancel(self, job_id: str) -> JobRecord:
        """Queued or paused: cancelled at once. Running: its worker stops it within one training step, keeping the
        checkpoint of that step (the status becomes `cancelled` once it has)."""
        return self._act(job_id, "cancel")

    def pause(self, job_id: str) -> JobRecord:
        return self._act(job_id, "pause")

    def resume(self, job_id: str) -> JobRecord:
        return self._act(job_id, "resume")

    def _act(self, job_id: str, action: str) -> JobRecord:
        job = self.queue.request(job_id, action)
        self.queue.add_event(job_id, {"cancel": "Cancellation requested", "pause": "Pause requested",
                                      "resume": "Resume requested"}[action])
        return job
