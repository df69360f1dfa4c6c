"""Feature extraction: the pretrained backbone is frozen, only the new task head trains and is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from safetensors.torch import load_file, save_file

from tuneforge.errors import CheckpointError
from tuneforge.methods.base import METHODS, HeadInfo, Method, MethodParams, freeze_all_but, head_state_dict

HEAD_FILE = "head.safetensors"


class FreezeParams(MethodParams):
    name: Literal["freeze"] = "freeze"
    default_learning_rate: ClassVar[float] = 2e-3


@METHODS.register
class Freeze(Method):
    name = "freeze"
    Params = FreezeParams

    def apply(self, model: Any, head: HeadInfo) -> Any:
        freeze_all_but(model, head.head_modules)
        return model

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        save_file(head_state_dict(model, head), str(out_dir / HEAD_FILE))

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        load_partial(base_model, in_dir / HEAD_FILE)
        return base_model



def load_partial(model: Any, path: Path) -> None:
    """Load a partial state dict; every saved key must exist in the model (else the file is not for it)."""
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
