"""Full fine-tuning: every weight trains; the whole model is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from tuneforge.methods.base import METHODS, HeadInfo, Method, MethodParams


class FullParams(MethodParams):
    name: Literal["full"] = "full"
    default_learning_rate: ClassVar[float] = 5e-5


@METHODS.register
class Full(Method):
    name = "full"
    Params = FullParams
    partial = False

    def apply(self, model: Any, head: HeadInfo) -> Any:
        for param in model.parameters():
            param.requires_grad = True
        return model

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        model.save_pretrained(str(out_dir), safe_serialization=True)

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        return base_model  # the task loads the saved full model directly from in_dir
