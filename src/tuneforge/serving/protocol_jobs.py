"""Request and response models of the fine-tuning jobs API, mirroring OpenAI's (`openai.types.fine_tuning`).

Unknown top-level request fields are ignored as elsewhere in the API; unknown hyperparameters are refused (400 naming
them), since a silently ignored hyperparameter trains a different model than the caller asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.serving.jobs_queue import JobCheckpoint, JobEvent, JobRecord

Auto = Literal["auto"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    n_epochs: Auto | int = Field("auto", description="Epochs (`auto`: tuneforge's default, 3).")
    batch_size: Auto | int = Field("auto", description="Examples per step (`auto`: tuneforge's default, 32).")
    learning_rate_multiplier: Auto | float = Field("auto", description="x the method's default learning rate.")

    @field_validator("n_epochs", "batch_size", "learning_rate_multiplier")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if value != "auto" and value <= 0:
            raise ValueError("must be 'auto' or a positive number")
        return value


class DpoHyperparameters(Hyperparameters):
    beta: Auto | float = Field("auto", description="DPO's beta (`auto`: tuneforge's default, 0.1).")


class _Hyper(_Strict):
    hyperparameters: Hyperparameters | None = None


class _DpoHyper(_Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(_Strict):
    type: Literal["supervised", "dpo"] = Field(description="supervised: sft; dpo: preference optimisation.")
    supervised: _Hyper | None = None
    dpo: _DpoHyper | None = None


class CreateJobRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=256, description="A catalogue base model, `default`, or a run.")
    training_file: str = Field(min_length=1, max_length=128)
    validation_file: str | None = Field(None, max_length=128)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    tuneforge: dict[str, Any] | None = Field(None, description="tuneforge extension: a (partial) run config.")


# ---- responses ---------------------------------------------------------------------------------------------


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = []
    seed: int
    status: str
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] = []
    metadata: dict[str, str] | None = None
    method: dict[str, Any]
    tuneforge: dict[str, Any] = Field(description="tuneforge: the run folder, attempts, the worker holding it.")

    @classmethod
    def of(cls, job: JobRecord) -> FineTuningJob:
        from tuneforge.serving.job_config import job_hyperparameters

        body = job.request
        method = body.get("method") or {"type": "supervised"}
        hyper = {k: v for k, v in {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto",
                                   **job_hyperparameters(body)}.items() if k != "beta"}
        kind = method["type"]
        shown = {"type": kind, kind: {"hyperparameters": {**hyper, **({"beta": job_hyperparameters(body).get(
            "beta", "auto")} if kind == "dpo" else {})}}}
        return cls(id=job.id, created_at=int(job.created_at), error=JobError(**job.error) if job.error else None,
                   fine_tuned_model=job.fine_tuned_model,
                   finished_at=int(job.finished_at) if job.finished_at else None, hyperparameters=hyper,
                   model=job.model, organization_id=job.org, seed=int(body.get("seed") or 42), status=job.status,
                   trained_tokens=job.trained_tokens, training_file=body["training_file"],
                   validation_file=body.get("validation_file"), metadata=body.get("metadata"), method=shown,
                   tuneforge={"run": job.id, "attempts": job.attempts, "worker": job.worker, "step": job.step,
                              "total_steps": job.total_steps,
                              "control": job.control or None, "extension": body.get("tuneforge")})


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None = None
    type: str

    @classmethod
    def of(cls, event: JobEvent) -> FineTuningJobEvent:
        return cls(id=event.id, created_at=int(event.created_at), level=event.level, message=event.message,
                   data=event.data or {}, type=event.type)


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int

    @classmethod
    def of(cls, ckpt: JobCheckpoint) -> FineTuningJobCheckpoint:
        return cls(id=ckpt.id, created_at=int(ckpt.created_at), fine_tuned_model_checkpoint=ckpt.model_id,
                   fine_tuning_job_id=ckpt.job_id, metrics=ckpt.metrics, step_number=ckpt.step)


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
