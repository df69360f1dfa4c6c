"""Cleaning steps, each counted in the data report: normalise, redact PII, dedupe, conflicting labels, length."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from tuneforge.config import CleanConfig
from tuneforge.data.pii import redact
from tuneforge.tasks.base import Task

Example = dict[str, Any]
_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str, unicode_nfc: bool = True, whitespace: bool = True) -> str:
    if unicode_nfc:
        text = unicodedata.normalize("NFC", text)
    if whitespace:
        text = _SPACES.sub(" ", text).strip()
    return text


def normalize_line_endings(text: str) -> str:
    """Windows (\r\n) and old Mac (\r) line endings become \n; every other character is kept as given."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_normaliser(task: Task, cfg: CleanConfig) -> Callable[[str], str]:
    """The normalisation applied to every text field: a task that trains on its text keeps its whitespace."""
    if task.preserves_whitespace:
        return lambda t: normalize_line_endings(normalize_text(t, cfg.normalize_unicode, whitespace=False))
    return lambda t: normalize_text(t, cfg.normalize_unicode, cfg.normalize_whitespace)


def _exact_key(task: Task, example: Example) -> tuple[str, str]:
    text = task.text_of(example)
    # Texts kept as given still count as the same when only their spacing differs (as they did before).
    return (_SPACES.sub(" ", text).strip() if task.preserves_whitespace else text), task.conflict_key(example)


def dedupe_key(text: str) -> str:
    """Key under which texts count as the same: case, accents' composition, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _PUNCT.sub(" ", text)).strip()


def record_hash(text: str) -> str:
    """A record's id however it was cleaned: sha256 of its dedupe key (case, spacing, punctuation and Unicode
    composition ignored), 32 hex digits. Every prepared example carries it as `_rid` (taken before PII redaction,
    from the text as read), so `tuneforge forget` finds a record in a run's data without keeping its text."""
    import hashlib

    return hashlib.sha256(dedupe_key(text).encode("utf-8")).hexdigest()[:32]


def _first_of_each(examples: list[Example], key: Callable[[Example], Any]) -> list[Example]:
    """The examples in order, each key's first one only."""
    seen: set[Any] = set()
    kept = []
    for ex in examples:
        k = key(ex)
        if k not in seen:
            seen.add(k)
            kept.append(ex)
    return kept


def clean_examples(examples: list[Example], task: Task, cfg: CleanConfig,
                   token_lengths: Callable[[list[Example]], list[int]] | None) -> tuple[list[Example], dict[str, Any]]:
    """Run the cleaning steps in order; returns kept examples and a report of what each step removed."""
    steps: dict[str, Any] = {"input": len(examples)}
    normalise = text_normaliser(task, cfg)
    out = [task.set_text(ex, normalise) for ex in examples]
    if cfg.redact_pii:
        pii: Counter[str] = Counter()
        out = [task.set_text(ex, lambda t: redact(t, pii)) for ex in out]
        steps["pii_redacted"] = dict(pii)

    before = len(out)
    out = [ex for ex in out if task.text_of(ex).strip()]
    steps["empty_after_normalisation"] = before - len(out)

    if cfg.dedupe != "none":
        kept = _first_of_each(out, lambda ex: _exact_key(task, ex))
        steps["exact_duplicates"] = len(out) - len(kept)
        out = kept

    if cfg.drop_conflicts:
        labels_by_text: dict[str, set[str]] = defaultdict(set)
        for ex in out:
            labels_by_text[dedupe_key(task.text_of(ex))].add(task.conflict_key(ex))
        conflicted = {t for t, labs in labels_by_text.items() if len(labs) > 1}
        dropped = [ex for ex in out if dedupe_key(task.text_of(ex)) in conflicted]
        out = [ex for ex in out if dedupe_key(task.text_of(ex)) not in conflicted]
        steps["conflicting_labels"] = len(dropped)
        steps["conflict_examples"] = [f"{ex['_src']}: {task.text_of(ex)[:80]!r}" for ex in dropped[:10]]

    if cfg.dedupe == "normalized":
        kept = _first_of_each(out, lambda ex: dedupe_key(task.text_of(ex)))
        steps["normalized_duplicates"] = len(out) - len(kept)
        out = kept

    if token_lengths is not None and (cfg.min_tokens > 0 or cfg.max_tokens):
        too_short = too_long = 0
        kept = []
        for ex, n in zip(out, token_lengths(out), strict=True):
            if n < cfg.min_tokens:
                too_short += 1
            elif cfg.max_tokens and n > cfg.max_tokens:
                too_long += 1
            else:
                kept.append(ex)
        out = kept
        steps["too_short"] = too_short
        steps["too_long"] = too_long
    steps["output"] = len(out)
    return out, steps
