"""OpenAI-compatible routes (+ /v1/classify). Each checks the request against the model, hands a job to the engine,
shapes the answer, and commits the request-log entry before it returns."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tuneforge.registry.loaded_run import LoadedRun
from tuneforge.serving.engine import ChatResult, GenerationParams, Job
from tuneforge.serving.model_pool import DEFAULT_MODEL
from tuneforge.serving.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResult,
    Completion,
    CompletionChoice,
    CompletionRequest,
    EmbeddingData,
    EmbeddingList,
    EmbeddingRequest,
    ErrorResponse,
    LabelScore,
    ModelCard,
    ModelList,
    SamplingFields,
    Usage,
    new_id,
)
from tuneforge.serving.request_log import RequestRecord
from tuneforge.serving.state import ApiError, ServingState

log = logging.getLogger("tuneforge.serve")
_bearer = HTTPBearer(auto_error=False, description="An API key from `tuneforge keys create`.")


def _state(request: Request) -> ServingState:
    return request.app.state.serving


def require_key(request: Request, _creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    return _state(request).authenticate(request).key_id


def require_scope(scope: str) -> Any:
    """A route dependency: the caller's key must hold `scope` (see `keys.allows`)."""

    def check(request: Request, _creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        return _state(request).authenticate(request, scope).key_id

    return check


ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 413, 429)}
public_router = APIRouter()
router = APIRouter(dependencies=[Depends(require_key)], responses=ERRORS)


@public_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "models": len(_state(request).engine.runs) + 1}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(_state(request).metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    state = _state(request)
    state.find_new_runs()
    state.follow_champions()
    runs = state.engine.runs
    cards = [ModelCard(id=name, created=int(run.path.stat().st_mtime) if run.path.exists() else 0,
                       task=run.task.name)
             for name, run in list(runs.items())]
    champions = [ModelCard(id=name, created=int(runs[target].path.stat().st_mtime) if runs[target].path.exists()
                           else 0, task=runs[target].task.name)  # registered names following `champion`
                 for name, target in state.engine.pool.aliases.items() if name not in runs]
    return ModelList(data=[*cards, *champions, ModelCard(id=DEFAULT_MODEL, created=0, task="embedding"),
                           *_base_model_cards(state, set(runs) | set(state.engine.pool.aliases))])


def _base_model_cards(state: ServingState, taken: set[str]) -> list[ModelCard]:
    """The workspace catalogue's base models (`tuneforge models add`): listed to fine-tune from, not served."""
    from tuneforge.registry.base_models import DEFAULT_BASE, BaseModelError, list_bases

    try:
        bases = list_bases(state.settings.workspace)
    except BaseModelError as exc:  # a damaged catalogue must not take the served runs' listing down
        log.warning("not listing base models: %s", exc)
        return []
    return [ModelCard(id=b.name, created=b.added, owned_by="tuneforge-base", task="base_model", servable=False)
            for b in bases if b.name != DEFAULT_BASE and b.name not in taken]


def _run(state: ServingState, model: str) -> LoadedRun:
    state.follow_champions()  # a registered name answers with its champion's run
    run = state.engine.runs.get(state.engine.pool.resolve(model))
    if run is None:
        state.find_new_runs()
        run = state.engine.runs.get(state.engine.pool.resolve(model))
    if run is None:
        raise ApiError(404, f"the model {model!r} does not exist; see GET /v1/models", param="model",
                       code="model_not_found")
    return run


def _generative(state: ServingState, req: SamplingFields) -> GenerationParams:
    run = _run(state, req.model)
    if not run.generative:
        raise ApiError(400, f"{req.model} is a {run.task.name} run; chat and completions need a generative run "
                            "(use /v1/classify or /v1/embeddings)", param="model", code="wrong_model_kind")
    limit = state.settings.limits.max_new_tokens
    if req.max_tokens is not None and req.max_tokens > limit:
        raise ApiError(400, f"max_tokens is {req.max_tokens}; this server allows at most {limit}",
                       param="max_tokens", code="max_tokens_too_large")
    if len(req.stop_list()) > 4:
        raise ApiError(400, "at most 4 stop strings", param="stop", code="invalid_value")
    if req.stream and (req.n > 1 or req.top_p < 1):
        raise ApiError(400, "streaming answers one reply with temperature and max_tokens; n > 1 and top_p < 1 "
                            "need stream=false", param="stream", code="unsupported")
    default = int(getattr(run.task.params, "max_new_tokens", 256) or 256)
    return GenerationParams(min(req.max_tokens or default, limit), req.temperature, req.top_p, req.n, req.seed,
                            tuple(req.stop_list()))


async def _log(state: ServingState, rec: RequestRecord) -> None:
    await asyncio.to_thread(state.request_log.write, rec)  # committed before the response leaves


def _finish_reason(result: ChatResult, params: GenerationParams) -> str:
    per_reply = result.completion_tokens / max(1, len(result.replies))
    return "length" if per_reply >= params.max_new_tokens else "stop"


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
    state, started = _state(request), time.perf_counter()
    params = _generative(state, req)
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    if req.stream:
        return await _stream(state, request, req.model, messages, params, "chat.completion.chunk", _chat_delta)
    result: ChatResult = await state.engine.submit(Job("chat", req.model, messages, params))
    reason = _finish_reason(result, params)
    response = ChatCompletion(model=req.model, choices=[
        ChatChoice(index=i, message={"role": "assistant", "content": text}, finish_reason=reason)
        for i, text in enumerate(result.replies)], usage=_usage(result))
    await _log(state, RequestRecord("/v1/chat/completions", 200, request.state.key_id, req.model, messages,
                                    result.replies, {"finish_reason": [reason] * len(result.replies)}, _ms(started),
                                    result.prompt_tokens, result.completion_tokens, response_id=response.id))
    return response


@router.post("/v1/completions", response_model=Completion)
async def completions(req: CompletionRequest, request: Request) -> Any:
    state, started = _state(request), time.perf_counter()
    params = _generative(state, req)
    prompts = req.prompts()
    if not prompts or len(prompts) > state.settings.limits.max_inputs:
        raise ApiError(400, f"give 1 to {state.settings.limits.max_inputs} prompts", param="prompt")
    turns = [[{"role": "user", "content": p}] for p in prompts]
    if req.stream:
        if len(turns) > 1:
            raise ApiError(400, "streaming takes one prompt", param="prompt", code="unsupported")
        return await _stream(state, request, req.model, turns[0], params, "text_completion", _text_delta)
    results: list[ChatResult] = await asyncio.gather(*(state.engine.submit(Job("chat", req.model, t, params))
                                                       for t in turns))
    choices = [CompletionChoice(index=i * req.n + j, text=text,
                                finish_reason=_finish_reason(res, params))
               for i, res in enumerate(results) for j, text in enumerate(res.replies)]
    usage = Usage(prompt_tokens=sum(r.prompt_tokens for r in results),
                  completion_tokens=sum(r.completion_tokens for r in results),
                  total_tokens=sum(r.prompt_tokens + r.completion_tokens for r in results))
    response = Completion(model=req.model, choices=choices, usage=usage)
    await _log(state, RequestRecord("/v1/completions", 200, request.state.key_id, req.model, prompts,
                                    [c.text for c in choices], {"finish_reason": [c.finish_reason for c in choices]},
                                    _ms(started), usage.prompt_tokens, usage.completion_tokens,
                                    response_id=response.id))
    return response


def _chat_delta(piece: str | None, finish: str | None, first: bool) -> dict[str, Any]:
    delta: dict[str, str] = {"role": "assistant", "content": ""} if first else {}
    if piece:
        delta["content"] = piece
    return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}


def _text_delta(piece: str | None, finish: str | None, _first: bool) -> dict[str, Any]:
    return {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}


async def _stream(state: ServingState, request: Request, model: str, messages: list[dict[str, str]],
                  params: GenerationParams, obj: str,
                  choice: Callable[[str | None, str | None, bool], dict[str, Any]]) -> StreamingResponse:
    """SSE as OpenAI sends it. Waits for the first piece (or the error) before answering, so a request the engine
    refuses (e.g. a prompt over the token limit) is still a 4xx JSON error, not a broken stream."""
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()
    job = Job("stream", model, messages, params, on_piece=lambda p: loop.call_soon_threadsafe(pieces.put_nowait, p))
    done = asyncio.ensure_future(state.engine.submit(job))
    getter = asyncio.ensure_future(pieces.get())
    await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
    if done.done() and done.exception() is not None and not getter.done():
        getter.cancel()
        raise done.exception()  # type: ignore[misc]
    chunk_id, created, started = new_id("chatcmpl" if obj.startswith("chat") else "cmpl"), int(time.time()), \
        time.perf_counter()

    def event(piece: str | None, finish: str | None = None, first: bool = False, **extra: Any) -> str:
        body = {"id": chunk_id, "object": obj, "created": created, "model": model,
                "choices": [choice(piece, finish, first)], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        nonlocal getter
        first = True
        while True:
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield event(getter.result(), first=first)
                first = False
                getter = asyncio.ensure_future(pieces.get())
                continue
            if pieces.empty():
                break
        getter.cancel()
        if done.exception() is not None:
            err = {"error": {"message": str(done.exception()), "type": "server_error", "param": None, "code": None}}
            yield f"data: {json.dumps(err)}\n\n"
            return
        result: ChatResult = done.result()
        reason = _finish_reason(result, params)
        await _log(state, RequestRecord(request.url.path, 200, request.state.key_id, model, messages,
                                        result.replies, {"finish_reason": [reason]}, _ms(started),
                                        result.prompt_tokens, result.completion_tokens, response_id=chunk_id))
        yield event(None, reason, first=first, usage=_usage(result).model_dump())
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _encoder_model(state: ServingState, model: str, route: str) -> None:
    if model == DEFAULT_MODEL and route == "embeddings":
        return
    run = _run(state, model)
    if run.generative:
        raise ApiError(400, f"{model} is a {run.task.name} run; /v1/{route} needs an encoder run"
                            f"{' or the default model' if route == 'embeddings' else ''}", param="model",
                       code="wrong_model_kind")


def _check_inputs(state: ServingState, inputs: list[Any]) -> None:
    limit = state.settings.limits.max_inputs
    if not inputs or len(inputs) > limit:
        raise ApiError(400, f"give 1 to {limit} inputs (got {len(inputs)})", param="input", code="invalid_value")
    if any(not (x if isinstance(x, str) else list(x)) for x in inputs):
        raise ApiError(400, "inputs must not be empty", param="input", code="invalid_value")


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(req: EmbeddingRequest, request: Request) -> EmbeddingList:
    state, started = _state(request), time.perf_counter()
    _encoder_model(state, req.model, "embeddings")
    texts = req.texts()
    _check_inputs(state, texts)
    vectors, tokens = await state.engine.submit(Job("embed", req.model, texts))
    data = [EmbeddingData(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
                          if req.encoding_format == "base64" else [float(x) for x in v])
            for i, v in enumerate(vectors)]
    await _log(state, RequestRecord("/v1/embeddings", 200, request.state.key_id, req.model, texts, None, None,
                                    _ms(started), tokens))
    return EmbeddingList(model=req.model, data=data, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


@router.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True)
async def classify(req: ClassifyRequest, request: Request) -> ClassifyResponse:
    """Labels with probabilities (classification runs) or entity spans (token-classification runs)."""
    state, started = _state(request), time.perf_counter()
    _encoder_model(state, req.model, "classify")
    inputs = req.inputs()
    _check_inputs(state, inputs)
    preds, tokens = await state.engine.submit(Job("classify", req.model, inputs))
    data = [_classify_result(i, p, req.top_k) for i, p in enumerate(preds)]
    response = ClassifyResponse(model=req.model, data=data, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
    await _log(state, RequestRecord("/v1/classify", 200, request.state.key_id, req.model, inputs,
                                    [d.model_dump(exclude_none=True, exclude={"index", "top", "tokens"}) for d in data],
                                    [{t.label: t.score for t in d.top or []} for d in data], _ms(started), tokens,
                                    response_id=response.id))
    return response


def _classify_result(index: int, pred: dict[str, Any], top_k: int) -> ClassifyResult:
    """The task's prediction, reshaped: a {label: probability} map becomes a ranked list of the top k."""
    scores = pred.get("top") or pred.get("scores")
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:top_k] if scores else None
    return ClassifyResult(index=index, label=pred.get("label"), score=pred.get("score"), labels=pred.get("labels"),
                          top=[LabelScore(label=k, score=v) for k, v in ranked] if ranked else None,
                          tokens=pred.get("tokens"), tags=pred.get("tags"), entities=pred.get("entities"))


def _usage(result: ChatResult) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                 total_tokens=result.prompt_tokens + result.completion_tokens)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
