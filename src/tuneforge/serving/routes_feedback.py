"""POST /v1/feedback: the true label (or a rating) for an answer the server gave, named by the `id` it returned.

Monitoring turns these rows into live accuracy per window (`tuneforge monitor`). Feedback is kept in the request
log's database (table `feedback`), so erasing a request (`tuneforge forget`) can find its feedback by the same id.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.serving.protocol import ErrorResponse
from tuneforge.serving.routes_inference import require_scope
from tuneforge.serving.state import ApiError, ServingState


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field must not pass silently as "no label"
    id: str = Field(min_length=1, max_length=128, description="The `id` of the response the feedback is about.")
    index: int = Field(0, ge=0, description="Which input of that request (a request may carry several).")
    label: str | None = Field(None, min_length=1, max_length=256, description="The true label.")
    rating: float | None = Field(None, ge=-1.0, le=1.0, description="A rating in [-1, 1] (generation).")

    @model_validator(mode="after")
    def _one_kind(self) -> FeedbackRequest:
        if self.label is None and self.rating is None:
            raise ValueError("give `label` (the true label) or `rating` (-1 to 1)")
        return self


class FeedbackResponse(BaseModel):
    object: Literal["feedback"] = "feedback"
    id: str
    index: int
    model: str | None
    correct: bool | None = Field(None, description="Whether the served label matched the given one.")


router = APIRouter(dependencies=[Depends(require_scope("inference"))],
                   responses={s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 429)})


def _served_label(entry: dict[str, Any], index: int) -> str | None:
    outputs = entry.get("output")
    if not isinstance(outputs, list) or index >= len(outputs):
        raise ApiError(400, f"index {index} is past the {len(outputs or [])} input(s) of that request",
                       param="index", code="invalid_value")
    item = outputs[index]
    return item.get("label") if isinstance(item, dict) else None


@router.post("/v1/feedback", response_model=FeedbackResponse)
async def feedback(req: FeedbackRequest, request: Request) -> FeedbackResponse:
    state: ServingState = request.app.state.serving
    entry = await asyncio.to_thread(state.request_log.find, req.id)
    if entry is None:
        raise ApiError(404, f"no logged response has id {req.id!r}; send the `id` a /v1 response returned "
                            "(requests logged with --no-log-inputs keep no answers to compare)", param="id",
                       code="request_not_found")
    served = _served_label(entry, req.index)
    run = state.engine.runs.get(state.engine.pool.resolve(entry["model"] or ""))  # a registered name: its champion
    if req.label is not None and run is not None and run.labels and req.label not in run.labels:
        raise ApiError(400, f"label {req.label!r} is not one of {entry['model']}'s labels "
                            f"({', '.join(run.labels[:10])}{', ...' if len(run.labels) > 10 else ''})",
                       param="label", code="unknown_label")
    await asyncio.to_thread(state.request_log.write_feedback, req.id, req.index, req.label, req.rating,
                            getattr(request.state, "key_id", None))
    correct = None if req.label is None or served is None else served == req.label
    return FeedbackResponse(id=req.id, index=req.index, model=entry["model"], correct=correct)
