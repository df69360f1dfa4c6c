"""The pieces `tuneforge compare` passes between its scorer and each task's row builders (no logic here, so the
task-specific builders and the scorer import this module and never each other)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Entrant:
    key: str
    name: str
    kind: str  # "baseline" | "fine_tuned" | "combined"
    outputs: np.ndarray  # predicted class ids, or per-example values (answer loss, reward)
    train_seconds: float | None
    latencies_ms: list[float]
    peak_memory_mb: float
    trainable_params: int
    artifact_bytes: int
    note: str = ""
    base: str | None = None  # for a combined row: the key of the run it extends
    # Further per-example values scored as means with their own CIs (embedding: recall@k, kNN accuracy).
    secondary: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CompareInputs:
    cfg: Any
    task: Any
    data: Any
    model_path: str
    runs: list[Any]
    out_dir: Path
    console: Any


@dataclass
class ComparisonResult:
    out_dir: Path
    metric: str
    rows: list[dict[str, Any]]
    recommendation: str
    extra: dict[str, Any] = field(default_factory=dict)



@dataclass(frozen=True)
class Comparison:
    """How a task is compared: `builder` is "module:function" returning (references, entrants) from CompareInputs
    (named, not imported, so declaring a comparison costs nothing until compare runs)."""

    builder: str
    metric: str
    higher_is_better: bool

    def entrants(self) -> Callable[[CompareInputs], tuple[np.ndarray, list[Entrant]]]:
        module, _, name = self.builder.partition(":")
        return getattr(importlib.import_module(module), name)
