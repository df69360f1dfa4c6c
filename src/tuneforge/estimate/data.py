"""What the plan needs from the data: the token length of every training row, however it can be known.

1. The model folder has a tokenizer: the data is prepared and encoded exactly as training does it (cleaning,
   split, chat template, truncation, packing), so the lengths are the real rows.
2. No tokenizer (a config.json-only folder, e.g. to plan a model not downloaded yet): tokens are estimated as
   characters / 4 plus a few special tokens, and the plan says so.
3. `data.train` is a dataset-statistics file (JSON with a `tuneforge_dataset_stats` object: `examples` and a
   `token_lengths` sample): the plan uses it instead of data you do not have yet. Training cannot use it.
`examples=N` scales any of them to N training rows with the same length distribution.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, ModelError

STATS_KEY = "tuneforge_dataset_stats"
CHARS_PER_TOKEN = 4  # English text with ~30-50k-token BPE vocabularies (OpenAI's rule of thumb)
TEMPLATE_TOKENS = 8  # special tokens and role markers a template or [CLS]/[SEP] add per example


@dataclass
class DataFacts:
    lengths: list[int]  # tokens of every training row after truncation (and packing)
    labels: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    packed: bool = False
    train_dataset: Any = None  # encoded rows, when a tokenizer was available (the dry run trains on them)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def max_len(self) -> int:
        return max(self.lengths, default=0)

    @property
    def mean_len(self) -> float:
        return sum(self.lengths) / max(len(self.lengths), 1)


def stats_file(cfg: Any) -> dict[str, Any] | None:
    train = cfg.data.train
    if not isinstance(train, str) or not train.endswith(".json") or not Path(train).is_file():
        return None
    try:
        raw = json.loads(Path(train).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or STATS_KEY not in raw:
        return None
    stats = raw[STATS_KEY]
    sample = stats.get("token_lengths") if isinstance(stats, dict) else None
    if not isinstance(sample, list) or not sample or not all(isinstance(x, int) and x > 0 for x in sample):
        raise ConfigError(f"{STATS_KEY}.token_lengths must be a non-empty list of positive integers", file=train,
                          key="data.train", fix="list the token lengths of a representative sample of examples")
    if not isinstance(stats.get("examples"), int) or stats["examples"] < 1:
        raise ConfigError(f"{STATS_KEY}.examples must be a positive integer", file=train, key="data.train",
                          fix="give the number of training examples the plan should assume")
    return stats


def has_tokenizer(model_dir: str) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")
    return any((Path(model_dir) / n).is_file() for n in names)


def _scale(lengths: list[int], examples: int | None) -> list[int]:
    if not examples or examples == len(lengths):
        return lengths
    reps = math.ceil(examples / len(lengths))
    return (lengths * reps)[:examples]


def _packed(lengths: list[int], max_length: int) -> list[int]:
    """Rows after best-fit-decreasing packing, approximated from lengths only: full rows of max_length."""
    total = sum(lengths)
    full, rest = divmod(total, max_length)
    return [max_length] * full + ([rest] if rest else [])


def data_facts(cfg: Any, task: Any, model_dir: str, examples: int | None = None) -> DataFacts:
    max_len = cfg.data.max_length
    packing = bool(getattr(task.params, "packing", False))
    stats = stats_file(cfg)
    if stats is not None:
        sample = [min(n, max_len) for n in stats["token_lengths"]]
        n = examples or stats["examples"]
        lengths = _scale(sample, n)
        note = (f"data: dataset statistics from {cfg.data.train} ({n:,} examples, token lengths from a sample of "
                f"{len(sample)}){': ' + stats['description'] if stats.get('description') else ''}")
        if packing:
            lengths = _packed(lengths, max_len)
        return DataFacts(lengths, list(stats.get("labels", [])), "dataset statistics file", [note], packing)
    if has_tokenizer(model_dir):
        facts = _encoded(cfg, task, model_dir)
    else:
        facts = _estimated(cfg, task, max_len)
        if packing:
            facts.lengths = _packed(facts.lengths, max_len)
    facts.packed = packing
    if examples:
        facts.notes.append(f"data: scaled from {facts.rows:,} to {examples:,} training rows (same length "
                           "distribution)")
        facts.lengths = _scale(facts.lengths, examples)
        facts.train_dataset = None  # the dry run trains on the real rows, not on the scaled ones
    return facts


def _encoded(cfg: Any, task: Any, model_dir: str) -> DataFacts:
    from tuneforge.data.prepare import prepare_data
    from tuneforge.models.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_dir, cfg.model.trust_remote_code, cfg.model.revision)
    except ModelError:
        return _estimated(cfg, task, cfg.data.max_length)
    task.prepare_tokenizer(tokenizer)
    data = prepare_data(cfg, task, tokenizer)
    encoded = task.encode(data.splits["train"], tokenizer, data.labels, cfg.data.max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    if not lengths:
        from tuneforge.errors import DataError

        raise DataError("no training rows left after preparation", file=str(cfg.data.train),
                        fix="check the data report (`tuneforge data prepare CONFIG`)")
    return DataFacts(lengths, data.labels, "tokenizer", [f"data: {len(lengths):,} training rows, tokens counted "
                                                         "with the model's tokenizer"], train_dataset=encoded)


def _estimated(cfg: Any, task: Any, max_len: int) -> DataFacts:
    from tuneforge.data.prepare import _paths, load_examples

    examples = load_examples(_paths(cfg.data.train), cfg, task, {})
    own_splits = cfg.data.validation is not None or cfg.data.test is not None
    keep = len(examples) if own_splits else max(1, round(len(examples) * cfg.data.split.train))
    lengths = [min(max_len, math.ceil(len(task.text_of(e)) / CHARS_PER_TOKEN) + TEMPLATE_TOKENS)
               for e in examples[:keep]]
    labels = sorted({lab for e in examples for lab in task.labels_of(e)})
    return DataFacts(lengths, labels, f"characters / {CHARS_PER_TOKEN}",
                     [f"data: no tokenizer in the model folder, so tokens are estimated as characters / "
                      f"{CHARS_PER_TOKEN} + {TEMPLATE_TOKENS} per example ({len(lengths):,} training rows, "
                      "no cleaning or deduplication applied)"])
