"""Feature extraction: the pretrained backbone is frozen, only the new task head trains and is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from safetensors.torch import save_file

from tuneforge.methods.base import (
    METHODS,
    HeadInfo,
    Method,
    MethodParams,
    freeze_all_but,
    head_state_dict,
    load_partial,
)

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


