"""Chat templates: the tokenizer's own, or a named built-in one; and assistant-only loss masks for any template.

Masks are found by rendering, not by searching for marker tokens: the text of conversation[:i] with a generation
prompt is a prefix of conversation[:i+1], so the characters between the two are exactly assistant turn i (its
content and end-of-turn marker). Token labels then follow the tokenizer's character offsets. This works for every
template that renders prefixes consistently, which `check_prefix_property` verifies per example.
"""

from __future__ import annotations

from typing import Any

BUILTIN: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
}
# The text that ends an assistant turn in each built-in template (generation stops there).
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


class TemplateError(ValueError):
    pass


def choose_template(tokenizer: Any, requested: str) -> tuple[str, str]:
    """(name, jinja source). 'auto': the tokenizer's own template if it has one, else chatml."""
    own = getattr(tokenizer, "chat_template", None)
    if requested == "tokenizer" or (requested == "auto" and own):
        if not own:
            raise TemplateError("the tokenizer has no chat template")
        # A built-in template saved with a tuned model keeps its name (and so its end-of-turn marker).
        return next((name for name, source in BUILTIN.items() if source == own), "tokenizer"), own
    name = "chatml" if requested == "auto" else requested
    if name not in BUILTIN:
        raise TemplateError(f"unknown chat template {name!r}; built-in: {', '.join(BUILTIN)}")
    return name, BUILTIN[name]


def render(tokenizer: Any, template: str, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, template: str, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of every assistant turn (not only the last)."""
    full = render(tokenizer, template, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, template, messages[:i], generation_prompt=True)
        through = render(tokenizer, template, messages[:i + 1])
        if not through.startswith(before) or not full.startswith(through):
            raise TemplateError("the chat template does not render conversation prefixes consistently, so "
                                "assistant tokens cannot be located")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_with_masks(tokenizer: Any, template: str, conversations: list[list[dict[str, str]]], max_length: int,
                        train_on_prompt: bool = False) -> list[dict[str, list[int]]]:
    """input_ids and labels per conversation: -100 everywhere except assistant turns (or everywhere trained, if
    train_on_prompt). One batched tokenizer call: calling the tokenizer per example costs about twice as much."""
    if not conversations:
        return []
    rendered = [assistant_spans(tokenizer, template, messages) for messages in conversations]
    enc = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True,
                    truncation=True, max_length=max_length)
    rows = []
    for (_, spans), ids, offsets in zip(rendered, enc["input_ids"], enc["offset_mapping"], strict=True):
        labels = []
        for token_id, (start, end) in zip(ids, offsets, strict=True):
            inside = any(s <= start < e or (start == end and s <= start < e) for s, e in spans)
            labels.append(token_id if train_on_prompt or inside else -100)
        rows.append({"input_ids": list(ids), "labels": labels})
    return rows


def tokenize_with_mask(tokenizer: Any, template: str, messages: list[dict[str, str]], max_length: int,
                       train_on_prompt: bool = False) -> dict[str, list[int]]:
    """input_ids and labels of one conversation (see tokenize_with_masks)."""
    return tokenize_with_masks(tokenizer, template, [messages], max_length, train_on_prompt)[0]
