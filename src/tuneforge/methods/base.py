"""The Method seam: how a pretrained model becomes a trainable one, and how what was trained is saved and reloaded.

One file per method in this folder, each defining a `Params` pydantic model (its config fields, with
`name: Literal[...]`) and a `Method` subclass registered in `METHODS`. Methods never know the task: the task tells
them its PEFT task type and which top-level modules are the freshly initialised head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tuneforge.plugins import Registry


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    # Learning rate used when `training.learning_rate` is not set: adapters want far larger steps than full FT.
    default_learning_rate: ClassVar[float] = 5e-5


@dataclass(frozen=True)
class HeadInfo:
    """What a task tells a method about the model it built."""

    peft_task_type: str | None  # e.g. "SEQ_CLS", "TOKEN_CLS", "CAUSAL_LM"
    head_modules: tuple[str, ...]  # top-level module names of the new head, always trained and saved


class Method(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    # True when `save` writes only part of the model, so loading needs the base model first.
    partial: ClassVar[bool] = True
    # Library that loads the saved artefact on its own (model card metadata).
    library_name: ClassVar[str] = "transformers"
    # Prepends trainable virtual tokens (shifts per-token outputs, so unusable for token classification).
    prepends_virtual_tokens: ClassVar[bool] = False
    # Feeds trained key/value prefixes as a cache (transformers then ignores packed-sequence masks).
    uses_kv_prefix: ClassVar[bool] = False
    # PEFT task types the method works with (None: all).
    supported_task_types: ClassVar[tuple[str, ...] | None] = None
    # Substrings of the names of the parameters the method adds (they keep the full learning rate when the
    # forgetting guard lowers the backbone's).
    new_parameter_markers: ClassVar[tuple[str, ...]] = ()
    # Loads the base quantised (the planner counts its frozen weights at ~4 bits and needs a GPU for it).
    quantized_base: ClassVar[bool] = False
    # Runs only on a CUDA GPU (the planner refuses CPU hardware for it).
    needs_cuda: ClassVar[bool] = False

    def check_environment(self) -> None:  # noqa: B027 - optional hook
        """Raise ConfigError before anything loads if this machine cannot run the method (e.g. no GPU)."""

    def load_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments for the base model (e.g. 4-bit quantisation)."""
        return {}

    def compute_dtype(self) -> str | None:
        """The dtype the non-quantised parts load in when the base is quantised (None: as the checkpoint)."""
        return None

    def apply_for_counting(self, model: Any, head: HeadInfo) -> Any:
        """`apply` on a meta-device model for the planner (a quantised base is counted, not really quantised)."""
        return self.apply(model, head)

    def __init__(self, params: MethodParams) -> None:
        self.params = params

    @abstractmethod
    def apply(self, model: Any, head: HeadInfo) -> Any:
        """Return the model with exactly the parameters this method trains left trainable."""

    @abstractmethod
    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        """Write only what was trained (plus the head) as safetensors into out_dir."""

    @abstractmethod
    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        """Rebuild the trained model from the base model and what `save` wrote."""

    def merge(self, model: Any) -> Any:
        """A plain transformers model for inference (adapters merged where the method allows)."""
        return model

    def load_for_training(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        """What `save` wrote, loaded onto the base and left trainable as `apply` would (continuing a finished run,
        `model.from_run`). Default: load, then `apply`'s freezing; methods whose `apply` adds modules override it."""
        return self.apply(self.load(base_model, in_dir, head), head)


METHODS: Registry[Method] = Registry("method")


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def freeze_all_but(model: Any, prefixes: tuple[str, ...]) -> None:
    """Freeze every parameter except those under the given top-level module names."""
    for name, param in model.named_parameters():
        param.requires_grad = name.split(".")[0] in prefixes


def head_state_dict(model: Any, head: HeadInfo) -> dict[str, Any]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.split(".")[0] in head.head_modules}


def load_partial(model: Any, path: Path) -> None:
    """Load a partial state dict (safetensors); every saved key must exist in the model, else it is not for it."""
    from safetensors.torch import load_file

    from tuneforge.errors import CheckpointError

    if not path.is_file():
        raise CheckpointError(f"{path}: file missing", fix="the run folder is incomplete; retrain or restore it")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{path}: cannot be read ({exc})",
                              fix="the file is damaged; retrain or restore it") from None
    missing = set(state) - set(model.state_dict())
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} saved tensors do not fit this model (e.g. {min(missing)})",
                              fix="load it with the base model and method it was trained with")
    model.load_state_dict(state, strict=False)
