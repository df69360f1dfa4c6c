"""Generation with a chat template: one reply, or a stream of text pieces for interactive chat."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tuneforge.tasks.chat_templates import END_OF_TURN, choose_template, render


def _prepare(model: Any, tokenizer: Any, messages: list[dict[str, str]], requested: str) -> tuple[Any, str | None]:
    name, template = choose_template(tokenizer, requested)
    prompt = render(tokenizer, template, messages, generation_prompt=True)
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(next(model.parameters()).device)
    return enc, END_OF_TURN.get(name)


def cut_at_stop(reply: str, stop: str | None) -> str:
    """Text before the end-of-turn marker; a marker cut short by max_new_tokens ('<|im') is dropped too."""
    if stop:
        reply = reply.split(stop)[0]
        for k in range(len(stop) - 1, 0, -1):
            if reply.endswith(stop[:k]):
                reply = reply[:-k]
                break
    return reply.strip()


def _finish(tokenizer: Any, text: str, stop: str | None) -> str:
    """The reply up to the end-of-turn marker, or up to the EOS text when a model spells it out in pieces (e.g.
    TinyStories writes '<|end_story|>' as ordinary tokens, which skip_special_tokens cannot remove)."""
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in text:
        text = text.split(eos)[0]
    return cut_at_stop(text, stop)


def _generate_kwargs(tokenizer: Any, stop: str | None, max_new_tokens: int, temperature: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
                              "use_cache": True, "do_sample": temperature > 0}
    if temperature > 0:
        kwargs["temperature"] = temperature
    if stop:
        kwargs.update(stop_strings=[stop], tokenizer=tokenizer)
    return kwargs


def generate_reply(model: Any, tokenizer: Any, messages: list[dict[str, str]], requested_template: str,
                   max_new_tokens: int, temperature: float = 0.0) -> str:
    import torch

    enc, stop = _prepare(model, tokenizer, messages, requested_template)
    with torch.inference_mode():
        ids = model.generate(**enc, **_generate_kwargs(tokenizer, stop, max_new_tokens, temperature))
    return _finish(tokenizer, tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True), stop)


@dataclass(frozen=True)
class GenerationSettings:
    """What an OpenAI-style request may set; temperature 0 means greedy (and ignores top_p and seed)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()


def cut_at_any(reply: str, stops: tuple[str, ...]) -> str:
    """Text before the first of the caller's stop strings (OpenAI's `stop`: the stop text itself is not returned)."""
    cuts = [reply.index(s) for s in stops if s and s in reply]
    return reply[:min(cuts)] if cuts else reply


def generate_replies(model: Any, tokenizer: Any, messages: list[dict[str, str]], requested_template: str,
                     settings: GenerationSettings) -> list[str]:
    """`settings.n` replies to one conversation, each cut at the template's end of turn and the caller's stops."""
    import torch

    enc, stop = _prepare(model, tokenizer, messages, requested_template)
    kwargs = _generate_kwargs(tokenizer, stop, settings.max_new_tokens, settings.temperature)
    if settings.stop:
        kwargs["stop_strings"] = [*kwargs.get("stop_strings", []), *settings.stop]
        kwargs["tokenizer"] = tokenizer
    if settings.temperature > 0 and settings.top_p < 1.0:
        kwargs["top_p"] = settings.top_p
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    with torch.inference_mode():
        ids = model.generate(**enc, **kwargs, num_return_sequences=settings.n)
    start = enc["input_ids"].shape[1]
    return [cut_at_any(_finish(tokenizer, tokenizer.decode(row[start:], skip_special_tokens=True), stop),
                       settings.stop).strip() for row in ids]


def generate_replies_batch(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
                           requested_template: str, max_new_tokens: int, stops: tuple[str, ...] = ()) -> list[str]:
    """Greedy replies to several conversations in one `generate` call: prompts padded on the left (so every row's
    next token sits at the end) with the attention mask and position ids ignoring the padding."""
    import torch

    name, template = choose_template(tokenizer, requested_template)
    stop = END_OF_TURN.get(name)
    prompts = [render(tokenizer, template, messages, generation_prompt=True) for messages in conversations]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    enc = enc.to(next(model.parameters()).device)
    kwargs = _generate_kwargs(tokenizer, stop, max_new_tokens, 0.0)
    if stops:
        kwargs["stop_strings"] = [*kwargs.get("stop_strings", []), *stops]
        kwargs["tokenizer"] = tokenizer
    with torch.inference_mode():
        ids = model.generate(**enc, **kwargs)
    start = enc["input_ids"].shape[1]
    return [cut_at_any(_finish(tokenizer, tokenizer.decode(row[start:], skip_special_tokens=True), stop),
                       stops).strip() for row in ids]


def sample_replies(model: Any, tokenizer: Any, messages: list[dict[str, str]], requested_template: str, n: int,
                   max_new_tokens: int, temperature: float) -> list[str]:
    """`n` sampled replies to one conversation (the caller seeds torch's generator)."""
    import torch

    enc, stop = _prepare(model, tokenizer, messages, requested_template)
    with torch.inference_mode():
        ids = model.generate(**enc, **_generate_kwargs(tokenizer, stop, max_new_tokens, temperature),
                             num_return_sequences=n)
    start = enc["input_ids"].shape[1]
    return [_finish(tokenizer, tokenizer.decode(row[start:], skip_special_tokens=True), stop) for row in ids]


def stream_reply(model: Any, tokenizer: Any, messages: list[dict[str, str]], requested_template: str,
                 max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
    """Yield the reply as it is generated (generation runs in a thread), stopping before the end-of-turn marker."""
    from transformers import TextIteratorStreamer

    enc, stop = _prepare(model, tokenizer, messages, requested_template)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = {**enc, **_generate_kwargs(tokenizer, stop, max_new_tokens, temperature), "streamer": streamer}
    worker = threading.Thread(target=model.generate, kwargs=kwargs, daemon=True)
    worker.start()
    text = ""
    shown = 0
    for piece in streamer:
        text += piece
        visible = text.split(stop)[0] if stop else text
        # Hold back anything that could be the start of the stop marker until it is decided.
        safe = len(visible) - max((k for k in range(1, len(stop)) if visible.endswith(stop[:k])), default=0) \
            if stop else len(visible)
        if safe > shown:
            yield visible[shown:safe]
            shown = safe
        if stop and stop in text:
            break
    worker.join()


def load_causal_lm(model_path: str, **load_kwargs: Any) -> Any:
    """A causal LM (safetensors only), with the tokenizer's pad id copied in when the config has none."""
    from transformers import AutoModelForCausalLM

    from tuneforge.models.loading import from_pretrained

    pad_token_id = load_kwargs.pop("pad_token_id", None)
    model = from_pretrained(AutoModelForCausalLM, model_path, **load_kwargs)
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def replies(model: Any, tokenizer: Any, texts: list[Any], requested_template: str,
            max_new_tokens: int) -> list[dict[str, Any]]:
    """One greedy reply per input: a user message (str) or a whole conversation (list of {role, content})."""
    return [{"reply": generate_reply(model, tokenizer, t if isinstance(t, list) else
                                     [{"role": "user", "content": str(t)}], requested_template, max_new_tokens)}
            for t in texts]
