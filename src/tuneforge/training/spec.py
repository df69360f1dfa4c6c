"""Which trainer runs a task (kept apart from the trainer itself so that tasks can name one without importing
transformers' Trainer, the run config or anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainerSpec:
    """The library trainer class, its arguments class and any extra settings for both (None: transformers'
    Trainer and TrainingArguments)."""

    base: type | None = None
    args_class: type | None = None
    args_extra: dict[str, Any] = field(default_factory=dict)
    init_extra: dict[str, Any] = field(default_factory=dict)
