"""The engine: a dynamic batcher over loaded runs, run by one worker thread (the only thread that touches models).

Requests wait up to `batch_window_ms` for others, up to `max_batch` requests, then are grouped by model and kind:
- classify / embed: all inputs of a group go through one batched forward pass;
- chat / completions with greedy decoding (temperature 0, n = 1) and the same max_tokens and stop strings: one
  left-padded `generate` call (`LoadedRun.generate_batch`), whose text equals `LoadedRun.generate` alone;
- sampled requests (temperature > 0, n > 1, a seed) and streams run one at a time, so a seed gives the same
  text as `LoadedRun.generate` with that seed.
Routes await a future per request; the route, not the engine, writes the request log.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError
from tuneforge.registry.loaded_run import LoadedRun
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.model_pool import DEFAULT_MODEL, ModelPool


class RequestTooLarge(TuneforgeError):
    """A request over one of the server's token or input limits (HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    max_new_tokens: int = 1024
    max_prompt_tokens: int = 4096
    max_inputs: int = 256  # texts per embeddings / classify request


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def batchable(self) -> bool:
        return self.temperature == 0 and self.n == 1


@dataclass
class Job:
    kind: str  # "classify" | "embed" | "chat" | "stream"
    model: str
    payload: Any  # inputs (classify, embed) or messages (chat, stream)
    params: GenerationParams | None = None
    on_piece: Callable[[str], None] | None = None  # stream: called from the worker with each text piece
    future: Future = field(default_factory=Future)

    def group_key(self) -> tuple[Any, ...]:
        if self.kind in ("classify", "embed") or (self.kind == "chat" and self.params and self.params.batchable):
            return (self.kind, self.model, self.params)
        return ("single", id(self))


@dataclass
class ChatResult:
    replies: list[str]
    prompt_tokens: int
    completion_tokens: int


class Engine:
    def __init__(self, runs: dict[str, LoadedRun], *, max_adapters: int = 8, max_batch: int = 8,
                 batch_window_ms: float = 10.0, device: str = "cpu", limits: Limits | None = None,
                 metrics: Metrics | None = None) -> None:
        self.pool = ModelPool(runs, max_adapters, device)
        self.max_batch, self.window_s = max(1, max_batch), max(0.0, batch_window_ms) / 1000
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.metrics.resident_adapters = lambda: len(self.pool.resident_adapters)
        self._queue: queue.Queue[Job] = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._loop, name="tuneforge-engine", daemon=True)

    @property
    def runs(self) -> dict[str, LoadedRun]:
        return self.pool.runs

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=30)

    async def submit(self, job: Job) -> Any:
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    # ---- the worker -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.window_s
            while len(jobs) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    jobs.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple[Any, ...], list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.group_key(), []).append(job)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, group: list[Job]) -> None:
        try:
            self.metrics.observe_batch(len(group))
            results = self._execute(group)
        except Exception as exc:  # the routes turn it into a JSON error; the worker keeps going
            for job in group:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(group, results, strict=True):
            if isinstance(result, Exception):  # this request alone was refused; the rest of its batch ran
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _execute(self, group: list[Job]) -> list[Any]:
        first = group[0]
        if first.kind == "embed":
            vectors, tokenizer = self._embed(first.model, [t for job in group for t in job.payload])
            return _split(vectors, group, tokenizer)
        run = self.pool.acquire(first.model)
        if first.kind == "classify":
            return _split(run.predict([x for job in group for x in job.payload]), group, run.tokenizer)
        if first.kind == "stream":
            return [self._stream(run, first)]
        return self._chat(run, group)

    def _embed(self, model: str, texts: list[str]) -> tuple[list[np.ndarray], Any]:
        if model == DEFAULT_MODEL:
            from tuneforge.evaluation.embeddings import sentence_embeddings

            encoder, tokenizer = self.pool.default_encoder()
            return list(sentence_embeddings(encoder, tokenizer, texts, max_length=256)), tokenizer
        run = self.pool.acquire(model)
        return list(run.embed(texts)), run.tokenizer

    def _chat(self, run: LoadedRun, group: list[Job]) -> list[ChatResult | Exception]:
        params: GenerationParams = group[0].params  # type: ignore[assignment]
        results: list[ChatResult | Exception] = []
        for job in group:  # a prompt over the limit refuses that request only
            try:
                results.append(ChatResult([], self._prompt_tokens(run, job.payload), 0))
            except RequestTooLarge as exc:
                results.append(exc)
        accepted = [(job, res) for job, res in zip(group, results, strict=True) if isinstance(res, ChatResult)]
        if len(accepted) == 1:
            replies = [run.generate(accepted[0][0].payload, max_new_tokens=params.max_new_tokens,
                                    temperature=params.temperature, top_p=params.top_p, n=params.n,
                                    seed=params.seed, stop=list(params.stop))]
        elif accepted:
            replies = [[r] for r in run.generate_batch([job.payload for job, _ in accepted],
                                                       max_new_tokens=params.max_new_tokens, stop=list(params.stop))]
        for (_job, res), texts in zip(accepted, replies if accepted else [], strict=True):
            res.replies, res.completion_tokens = texts, sum(self._count(run, t) for t in texts)
        return results

    def _stream(self, run: LoadedRun, job: Job) -> ChatResult:
        """Pieces go to the route as they come; stop strings are applied here, holding back a possible start."""
        params: GenerationParams = job.params  # type: ignore[assignment]
        used = self._prompt_tokens(run, job.payload)
        text, visible, shown = "", "", 0
        if params.seed is not None:  # torch's generator is global, so the generate thread below draws from it
            import torch

            torch.manual_seed(params.seed)
        hold = max((len(s) for s in params.stop), default=1) - 1
        pieces = run.stream(job.payload, max_new_tokens=params.max_new_tokens, temperature=params.temperature)
        for piece in pieces:
            text += piece
            cut = min((text.index(s) for s in params.stop if s in text), default=None)
            visible = text if cut is None else text[:cut]
            safe = len(visible) if cut is not None else max(shown, len(visible) - hold)
            if safe > shown and job.on_piece:
                job.on_piece(visible[shown:safe])
                shown = safe
            if cut is not None:
                break
        for _ in pieces:  # run the generator out: its generate thread must end before the model is used again
            pass
        if job.on_piece and shown < len(visible):
            job.on_piece(visible[shown:])
        return ChatResult([visible], used, self._count(run, visible))

    def _prompt_tokens(self, run: LoadedRun, messages: list[dict[str, str]]) -> int:
        from tuneforge.tasks.chat_templates import render

        _name, template = run.chat_template()
        used = len(run.tokenizer(render(run.tokenizer, template, messages, generation_prompt=True),
                                 add_special_tokens=False)["input_ids"])
        if used > self.limits.max_prompt_tokens:
            raise RequestTooLarge(f"the prompt is {used} tokens; this server takes at most "
                                  f"{self.limits.max_prompt_tokens}", fix="shorten the messages")
        return used

    @staticmethod
    def _count(run: LoadedRun, text: str) -> int:
        return len(run.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def _split(flat: list[Any], group: list[Job], tokenizer: Any) -> list[tuple[list[Any], int]]:
    """Each job's share of a batched result, with the tokens its inputs took (for `usage`)."""
    out, start = [], 0
    for job in group:
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in job.payload]
        tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])
        out.append((flat[start:start + len(job.payload)], tokens))
        start += len(job.payload)
    return out
