"""What "like training" means for a run: its held-out data (validation + test splits) seen through the run.

The reference is held-out data, not the training split: a fine-tuned model embeds and scores the examples it
trained on differently from new examples of the same distribution, so comparing traffic with the training split
would flag drift on traffic that is exactly like training. The vocabulary for out-of-vocabulary rates is the
training split's (that is what the model learnt from)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.monitoring.log_reader import MonitorError

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_REFERENCE = 600


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def oov_rates(texts: list[str], vocab: set[str]) -> np.ndarray:
    """Per text: the share of its words the training split never contained (0 for texts without words)."""
    out = []
    for text in texts:
        ws = words(text)
        out.append(sum(w not in vocab for w in ws) / len(ws) if ws else 0.0)
    return np.asarray(out, dtype=float)


def input_of(example: dict[str, Any]) -> Any:
    """What a request for this example would send: the text, the token list, or the last user turn."""
    if "messages" in example:
        users = [m["content"] for m in example["messages"] if m.get("role") == "user"]
        return users[-1] if users else ""
    if "prompt" in example and "completion" in example:
        return example["prompt"]
    if "tokens" in example:
        return example["tokens"]
    return example.get("text", "")


def reply_of(example: dict[str, Any]) -> str | None:
    if "messages" in example:
        replies = [m["content"] for m in example["messages"] if m.get("role") == "assistant"]
        return replies[-1] if replies else None
    return example.get("completion")


def as_text(item: Any) -> str:
    return " ".join(item) if isinstance(item, list) else str(item)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Reference:
    """The held-out examples and what the run makes of them; `features(...)` puts traffic on the same scale."""

    source: list[str]
    inputs: list[Any]
    labels: list[str | None]
    vocab: set[str]
    embeddings: np.ndarray
    lengths: np.ndarray
    oov: np.ndarray
    predictions: list[Any]
    replies: list[str | None]

    @property
    def texts(self) -> list[str]:
        return [as_text(x) for x in self.inputs]


def held_out_examples(run_dir: Path, seed: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    files = [run_dir / "data" / f"{name}.jsonl" for name in ("validation", "test")]
    found = [f for f in files if f.is_file()]
    if not found:
        raise MonitorError(f"{run_dir / 'data'}: the run kept no validation or test split to compare traffic with",
                           fix="monitor a run trained by this version of tuneforge (it saves its prepared splits)")
    examples = [ex for f in found for ex in _read_jsonl(f)]
    if len(examples) > MAX_REFERENCE:  # enough for the tests' power; more only costs time
        examples = random.Random(seed).sample(examples, MAX_REFERENCE)
    return examples, [str(f) for f in found]


def training_vocab(run_dir: Path) -> set[str]:
    path = run_dir / "data" / "train.jsonl"
    if not path.is_file():
        return set()
    vocab: set[str] = set()
    for ex in _read_jsonl(path):
        vocab.update(words(as_text(input_of(ex))))
    return vocab


def label_counts(items: list[str | None]) -> dict[str, int]:
    return dict(Counter(x for x in items if x is not None))
