"""Which characters of the training text the tokenizer cannot say (it drops them or maps them to unknown).

Each checked example is encoded and decoded again and the two character multisets compared: what is missing after
the round trip never reaches the model (e.g. TinyStories' tokenizer has no '/', '=' or '#', so GSM8K's
`48/2 = <<48/2=24>>24 ... #### 72` trains as `482  <<48224>>24 ... 72`). Large datasets are checked on a seeded
sample, and the report says so.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from tuneforge.tasks.base import Task

Example = dict[str, Any]
SAMPLE_SIZE = 2000  # examples round-tripped at most: enough to find any character that is not rare
# Decoders add, drop or merge spaces (and SentencePiece writes them as '▁'): spacing is not a lost character.
_IGNORED = {" ", "\u2581"}


def _expected(tokenizer: Any, text: str) -> str:
    """The text as the tokenizer's normaliser rewrites it on purpose (e.g. an uncased BERT lowercases and strips
    accents): only what is lost beyond that counts."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    return normalizer.normalize_str(text) if normalizer is not None else text


def _lost(expected: str, decoded: str) -> Counter[str]:
    lost = Counter(expected) - Counter(decoded)
    for char in _IGNORED:
        lost.pop(char, None)
    return lost


def _context(text: str, chars: Counter[str], width: int = 60) -> str:
    """A window of the text around the first lost character."""
    first = min((i for i in (text.find(c) for c in chars) if i >= 0), default=0)
    start = max(0, first - width // 2)
    return text[start:start + width]


def tokenizer_coverage(examples: list[Example], task: Task, tokenizer: Any, seed: int = 0,
                       sample_size: int = SAMPLE_SIZE) -> dict[str, Any] | None:
    """Characters lost in an encode/decode round trip of the examples' text (a seeded sample when there are more
    than `sample_size`): counts per character, the examples affected, and a few of them."""
    if tokenizer is None or not examples:
        return None
    chosen = examples if len(examples) <= sample_size else random.Random(seed).sample(examples, sample_size)
    texts = [task.text_of(ex) for ex in chosen]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    total: Counter[str] = Counter()
    affected = 0
    shown: list[str] = []
    for ex, text, back in zip(chosen, texts, decoded, strict=True):
        lost = _lost(_expected(tokenizer, text), back)
        if not lost:
            continue
        affected += 1
        total.update(lost)
        if len(shown) < 5:
            chars = ", ".join(repr(c) for c, _ in lost.most_common(5))
            shown.append(f"{ex.get('_src', '?')}: loses {chars} in {_context(text, lost)!r}")
    return {"examples_checked": len(chosen), "examples_total": len(examples), "sampled": len(chosen) < len(examples),
            "examples_affected": affected, "characters_lost": dict(total.most_common(20)), "examples": shown}


def coverage_warnings(coverage: dict[str, Any] | None) -> list[str]:
    """One warning when any checked example loses characters to the tokenizer."""
    if not coverage or not coverage["examples_affected"]:
        return []
    chars = ", ".join(f"{c!r}×{n}" for c, n in list(coverage["characters_lost"].items())[:8])
    checked = coverage["examples_checked"]
    scope = f"{checked} sampled of {coverage['examples_total']}" if coverage["sampled"] else f"{checked}"
    return [f"the tokenizer cannot represent some characters ({chars}) in {coverage['examples_affected']} of {scope} "
            "training examples: they are dropped or become unknown tokens, so the model never sees them; use a "
            "model whose tokenizer covers them, or rewrite them in the data"]
