"""The Task seam: what an example is, how it becomes tensors, which model class learns it and how it is scored.

One file per task in this folder, each with a `Params` pydantic model (`name: Literal[...]`) and a `Task` subclass
registered in `TASKS`. The data pipeline, trainer, evaluator and CLI only talk to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tuneforge.methods.base import HeadInfo
from tuneforge.plugins import Registry


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields holding local paths (made absolute when the run's config is saved, like data and model paths).
    path_fields: ClassVar[tuple[str, ...]] = ()
    name: str


class RecordError(ValueError):
    """Raised by Task.parse for one bad record; the loader adds file and line. `line` overrides the record's own
    line where the fault sits further down (a CoNLL sentence's bad tag is on that tag's line, not the first)."""

    def __init__(self, message: str, fix: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.line = line


def source_of(example: dict[str, Any]) -> tuple[str | None, int | None]:
    """(file, line) of an example from its `_src` ("file:line", set by the loader), for errors raised after parsing."""
    src = example.get("_src")
    if not isinstance(src, str):
        return None, None
    file, _, line = src.rpartition(":")
    return (file, int(line)) if file and line.isdigit() else (src, None)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)
    references: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[TaskParams]]
    # Metric used for early stopping and the headline comparison (higher is better).
    primary_metric: ClassVar[str]
    # PEFT's task type for this task's models.
    peft_task_type: ClassVar[str]
    # One output per input token (NER): methods that prepend virtual tokens cannot be used.
    per_token_outputs: ClassVar[bool] = False
    # Baselines this task can measure ("auto" runs all of them).
    baseline_names: ClassVar[tuple[str, ...]] = ()
    # Baselines that are upper bounds, shown but not counted as the baseline to beat (a distillation teacher).
    ceiling_names: ClassVar[tuple[str, ...]] = ()
    # Validation metric the trainer itself reports, used when early_stopping.metric is 'auto' (None: primary).
    training_metric: ClassVar[str | None] = None
    # Trains on packed causal-LM rows, so the GPU fast path (training/fast_path.py) can apply.
    supports_fast_path: ClassVar[bool] = False
    # Validation reports only the loss (generative tasks: logits over the vocabulary are too large to keep).
    loss_only_eval: ClassVar[bool] = False
    # The trained model writes replies (a causal LM with a chat template): generate/chat/serve chat completions.
    generative: ClassVar[bool] = False
    # The Hugging Face pipeline tag written into the model card (None: not one of the hub's standard tasks).
    pipeline_tag: ClassVar[str | None] = None
    # How `tuneforge compare` measures this task (evaluation/compare_types.Comparison), or None: not comparable.
    comparison: ClassVar[Any] = None
    # The data format of this task's files when their extension tells nothing (token classification: CoNLL).
    default_format: ClassVar[str | None] = None
    # Fewest distinct labels the data must have (classification: 2).
    min_labels: ClassVar[int] = 0
    # `tuneforge plan --dry-run` can measure real steps of this task.
    supports_dry_run: ClassVar[bool] = False
    # The task writes and reads its trained model whole (`save_trained`/`load_trained`, e.g. a sentence-transformers
    # folder) instead of the method's own files.
    saves_whole_model: ClassVar[bool] = False
    # Generative tasks train on the text itself: cleaning keeps its newlines and indentation (only \r\n becomes
    # \n), since collapsing them would rewrite reasoning lines and code into one line. Dedupe still compares
    # whitespace-normalised keys.
    preserves_whitespace: ClassVar[bool] = False
    # Examples are free text whose label survives word edits (swap, delete, synonyms): `data.augment` applies.
    augmentable: ClassVar[bool] = False

    def before_training(self, model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], seed: int,
                        run_dir: Path) -> dict[str, Any]:
        """Called with the base model before the method wraps it (e.g. to measure it on a reference set).
        May add examples to splits['train']; returns facts for the run's records."""
        return {}

    def check_config(self, cfg: Any) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Reject settings this task cannot run with before any data or model is loaded (raise ConfigError)."""

    def trainer_spec(self, cfg: Any) -> Any:
        """The trainer class and its arguments class (default: transformers' Trainer)."""
        from tuneforge.training.spec import TrainerSpec

        return TrainerSpec()

    def trainer_options(self) -> dict[str, Any]:
        """Extra keyword arguments for the trainer (e.g. forgetting mitigations)."""
        return {}

    def apply_method(self, method: Any, model: Any, head: HeadInfo) -> Any:
        """The model with the method applied (a task whose model wraps a transformers model may apply it inside)."""
        return method.apply(model, head)

    def save_trained(self, model: Any, method: Any, out_dir: Path) -> None:
        """Write the whole trained model into out_dir (tasks with `saves_whole_model` only)."""
        raise NotImplementedError(f"task {self.name!r} saves through its method")

    def load_trained(self, model_dir: Path, device: str) -> Any:
        """Read back what `save_trained` wrote (tasks with `saves_whole_model` only)."""
        raise NotImplementedError(f"task {self.name!r} loads through its method")

    def prepare_tokenizer(self, tokenizer: Any) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Adjust the tokenizer before data is encoded (e.g. set the chat template that gets saved with it)."""

    def __init__(self, params: TaskParams) -> None:
        self.params = params

    # ---- data -------------------------------------------------------------------------------------------
    @abstractmethod
    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        """Turn one raw record into a canonical example, or raise RecordError naming the fix."""

    @abstractmethod
    def text_of(self, example: dict[str, Any]) -> str:
        """The text used for normalisation, deduplication and leakage checks."""

    @abstractmethod
    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        """Apply a text transform (normalisation, PII redaction) to every text field of an example."""

    @abstractmethod
    def label_key(self, example: dict[str, Any]) -> str:
        """A hashable summary of the label(s): stratification key and conflict detection."""

    def conflict_key(self, example: dict[str, Any]) -> str:
        """Two examples with the same text but different conflict keys contradict each other."""
        return self.label_key(example)

    @abstractmethod
    def labels_of(self, example: dict[str, Any]) -> list[str]:
        """Every label (class or entity type) an example carries, for the label list and distribution."""

    @abstractmethod
    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        """Tokens per example (before truncation), for the length filter and the data report."""

    def untrainable(self, examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[str | None]:
        """Per example, why it would train on nothing once encoded at max_length (None: it trains). The data stage
        removes and counts these, so that encode() does not drop them unseen."""
        return [None] * len(examples)

    def label_list(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        """The label set when the config gives none: every label seen in any split, sorted."""
        return sorted({lab for exs in splits.values() for ex in exs for lab in self.labels_of(ex)})

    # ---- model ------------------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        """Load the base model with this task's head for `labels`."""

    @abstractmethod
    def head_info(self, model: Any) -> HeadInfo: ...

    @abstractmethod
    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        """Tokenize examples into a `datasets.Dataset` with model inputs and labels."""

    @abstractmethod
    def collator(self, tokenizer: Any) -> Any: ...

    def loss_weights(self, examples: list[dict[str, Any]], labels: list[str]) -> Any:
        """Optional per-class loss weights (None = unweighted)."""
        return None

    @abstractmethod
    def metric_names(self) -> list[str]:
        """Names `compute_metrics` returns (validation metrics usable for early stopping, besides 'loss')."""

    @abstractmethod
    def compute_metrics(self, labels: list[str]) -> Callable[[Any], dict[str, float]]:
        """Metrics from a transformers EvalPrediction, used during training."""

    @abstractmethod
    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult: ...

    @abstractmethod
    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]: ...

    @abstractmethod
    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """Base-model baselines measured on the test split (linear probe, zero-shot, ...)."""

    def plots(self, result: EvalResult, labels: list[str], out_dir: Path) -> list[Path]:
        return []

    # ---- what later stages ask of a task ------------------------------------------------------------------
    def input_fields(self, columns: Any) -> tuple[str, str | None]:
        """The record field a prediction reads, and the optional second text (pairs), for `predict --file`."""
        return columns.text, columns.text_pair

    def embed(self, model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> Any:
        """L2-normalised sentence vectors when the task makes them its own way; None: the encoder inside the task
        model, pooled as it was trained (LoadedRun.embed; not imported here, which would close an import circle)."""
        return None

    def chat_template(self, tokenizer: Any) -> tuple[str, str]:
        """(name, template) the task renders conversations with; generative tasks only."""
        raise NotImplementedError(f"task {self.name!r} renders no conversations")



TASKS: Registry[Task] = Registry("task")
