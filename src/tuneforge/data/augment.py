"""Augmentation of a small training split: EDA edits and paraphrases from a generative run (`data.augment`).

EDA (Wei & Zou, 2019): random swap, random deletion, random insertion and synonym replacement, each changing
about `alpha` of an example's words. Synonyms are not taken from WordNet (not installed, English only) but from the
base model itself: the nearest whole words to a word in the model's input embedding matrix (data/neighbours.py).
Paraphrases come from a finished generative run the user names (`load_run(run).generate`).

Only the training split is augmented, after the split and the leakage check: a new example whose normalised text
equals a validation or test text is dropped (and counted), as is one that equals an existing training text.
Every new example keeps its parent's label, and its parent's record id (`_rid`), so `tuneforge forget` erases
a record's augmented copies with it. Everything is seeded: the same data, config and seed give the same rows.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from tuneforge.config import AugmentConfig, RunConfig
from tuneforge.data.clean import dedupe_key
from tuneforge.data.neighbours import STOP_WORDS
from tuneforge.errors import ConfigError
from tuneforge.tasks.base import Task

Example = dict[str, Any]
Synonyms = Callable[[str], list[str]]
_WORD = re.compile(r"^(\W*)(\w+)(\W*)$")


def _core(word: str) -> tuple[str, str, str] | None:
    """(leading punctuation, the word, trailing punctuation), or None for a token that is not a word."""
    match = _WORD.match(word)
    return (match.group(1), match.group(2), match.group(3)) if match and match.group(2).isalpha() else None


def _same_case(original: str, new: str) -> str:
    return new.capitalize() if original[:1].isupper() else new


def synonym_replace(words: list[str], n: int, rng: random.Random, synonyms: Synonyms) -> list[str] | None:
    """Replace up to n content words (not stop words) by one of their embedding neighbours."""
    out = list(words)
    order = [i for i, w in enumerate(out) if (c := _core(w)) and c[1].lower() not in STOP_WORDS]
    rng.shuffle(order)
    replaced = 0
    for i in order:
        lead, word, trail = _core(out[i])  # type: ignore[misc]
        options = synonyms(word.lower())
        if options:
            out[i] = lead + _same_case(word, rng.choice(options)) + trail
            replaced += 1
            if replaced >= n:
                break
    return out if replaced else None


def random_insert(words: list[str], n: int, rng: random.Random, synonyms: Synonyms) -> list[str] | None:
    """Insert, n times, a neighbour of a random content word at a random position."""
    out = list(words)
    anchors = [c[1].lower() for w in words if (c := _core(w)) and c[1].lower() not in STOP_WORDS]
    inserted = 0
    for _ in range(4 * n):  # a few tries: some anchors have no neighbour close enough
        if inserted >= n or not anchors:
            break
        options = synonyms(rng.choice(anchors))
        if options:
            out.insert(rng.randint(0, len(out)), rng.choice(options))
            inserted += 1
    return out if inserted else None


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str] | None:
    if len(words) < 2:
        return None
    out = list(words)
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out if out != words else None


def random_delete(words: list[str], p: float, rng: random.Random) -> list[str] | None:
    """Drop each word with probability p; at least one word goes and at least one stays."""
    if len(words) < 2:
        return None
    out = [w for w in words if rng.random() >= p]
    if len(out) == len(words):
        out.pop(rng.randrange(len(out)))
    return out or [rng.choice(words)]


def edit_text(text: str, kind: str, alpha: float, rng: random.Random, synonyms: Synonyms) -> str | None:
    """One EDA edit of a text (None: the edit could not change it)."""
    words = text.split()
    if not words:
        return None
    n = max(1, round(alpha * len(words)))
    if kind == "swap":
        out = random_swap(words, n, rng)
    elif kind == "delete":
        out = random_delete(words, alpha, rng)
    elif kind == "insert":
        out = random_insert(words, n, rng, synonyms)
    else:
        out = synonym_replace(words, n, rng, synonyms)
    return " ".join(out) if out is not None else None


class _Collector:
    """Adds new examples, refusing duplicates of training texts and any text of validation or test (leakage)."""

    def __init__(self, task: Task, train: list[Example], held: set[str]) -> None:
        self.task, self.held = task, held
        self.seen = {dedupe_key(task.text_of(ex)) for ex in train}
        self.added: list[Example] = []
        self.by_kind: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def offer(self, parent: Example, new: Example | None, kind: str) -> None:
        if new is None:
            self.skipped["unchanged"] += 1
            return
        key = dedupe_key(self.task.text_of(new))
        if not key:
            self.skipped["unchanged"] += 1
        elif key in self.held:
            self.skipped["would_leak_into_validation_or_test"] += 1
        elif key in self.seen:
            self.skipped["duplicate"] += 1
        else:
            self.seen.add(key)
            self.added.append({**new, "_src": f"augment:{kind}:{parent.get('_src', '')}",
                               "_rid": parent.get("_rid"), "_augment": kind})
            self.by_kind[kind] += 1


def _eda(train: list[Example], aug: AugmentConfig, task: Task, seed: int, synonyms: Synonyms,
         collect: _Collector) -> None:
    kinds = list(aug.edits)
    for i, ex in enumerate(train):
        for j in range(aug.n):
            kind = kinds[(i * aug.n + j) % len(kinds)]  # the kinds in turn over the whole split: balanced
            # A string seed (hashed with sha512 by `random`) per example and copy: independent of the order.
            rng = random.Random(f"{seed}:{ex.get('_rid') or i}:{j}")
            failed = [False]

            def edit(text: str, kind: str = kind, rng: random.Random = rng, failed: list[bool] = failed) -> str:
                out = edit_text(text, kind, aug.alpha, rng, synonyms)
                failed[0] = failed[0] or out is None
                return text if out is None else out

            new = task.set_text(ex, edit)
            collect.offer(ex, None if failed[0] else new, kind)


def _paraphrases(train: list[Example], aug: AugmentConfig, task: Task, seed: int, collect: _Collector) -> None:
    from tuneforge.registry.loaded_run import load_run

    assert aug.paraphrase is not None
    para = aug.paraphrase
    writer = load_run(para.run)
    if not writer.generative:
        raise ConfigError(f"run {para.run} is a {writer.task.name} run; paraphrases need a generative run",
                          key="data.augment.paraphrase.run", fix="name a finished sft run")
    for i, ex in enumerate(train):
        for j in range(para.n):
            def write(text: str, j: int = j, i: int = i) -> str:
                replies = writer.generate([{"role": "user", "content": para.prompt.format(text=text)}],
                                          max_new_tokens=para.max_new_tokens, temperature=para.temperature,
                                          seed=seed + 1000 * i + j)
                lines = [line.strip() for line in (replies[0] if replies else "").splitlines() if line.strip()]
                return lines[0] if lines else ""

            collect.offer(ex, task.set_text(ex, write), "paraphrase")
    writer.release()


def augment_split(splits: dict[str, list[Example]], cfg: RunConfig, task: Task,
                  synonyms: Synonyms | None = None) -> tuple[list[Example], dict[str, Any]]:
    """The training split with its new examples appended, and the data report's `augmentation` section.
    `synonyms` (word -> neighbours) defaults to the base model's embedding neighbours."""
    aug = cfg.data.augment
    assert aug is not None
    if not task.augmentable:
        raise ConfigError(f"data.augment does not apply to {task.name}: its examples are not free text that "
                          "word edits keep valid", key="data.augment", fix="remove data.augment")
    seed = aug.seed if aug.seed is not None else cfg.training.seed
    train = splits["train"]
    held = {dedupe_key(task.text_of(ex)) for name in ("validation", "test") for ex in splits.get(name, [])}
    collect = _Collector(task, train, held)
    needs_neighbours = aug.n > 0 and bool({"insert", "synonym"} & set(aug.edits))
    if synonyms is None and needs_neighbours:
        from tuneforge.data.neighbours import EmbeddingNeighbours
        from tuneforge.models.loading import resolve_model_path

        synonyms = EmbeddingNeighbours.from_model(resolve_model_path(cfg.model, cfg.output_dir), aug.neighbours,
                                                  aug.min_similarity, cfg.model.trust_remote_code).synonyms
    if aug.n > 0:
        _eda(train, aug, task, seed, synonyms or (lambda word: []), collect)
    if aug.paraphrase is not None:
        _paraphrases(train, aug, task, seed, collect)
    section = {"applied_to": "train", "source_rows": len(train), "rows_added": len(collect.added),
               "by_kind": dict(sorted(collect.by_kind.items())), "skipped": dict(sorted(collect.skipped.items())),
               "seed": seed, "edits_per_example": aug.n, "alpha": aug.alpha,
               "synonyms": "nearest whole words in the base model's input embeddings" if needs_neighbours else None,
               "paraphrase_run": aug.paraphrase.run if aug.paraphrase else None, "keep": aug.keep}
    return train + collect.added, section
