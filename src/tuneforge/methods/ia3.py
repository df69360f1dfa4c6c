"""IA3: learned per-channel rescaling of keys, values and feed-forward activations; the head trains fully."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.methods._peft_common import PeftMethod, task_type
from tuneforge.methods.base import METHODS, HeadInfo, MethodParams


class IA3Params(MethodParams):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(None, description="None: PEFT's default for the architecture.")
    feedforward_modules: list[str] | None = Field(None, description="Subset of target_modules that are FFN.")
    default_learning_rate: ClassVar[float] = 3e-3


@METHODS.register
class IA3(PeftMethod):
    name = "ia3"
    new_parameter_markers = ("ia3_", "modules_to_save")
    Params = IA3Params

    def peft_config(self, head: HeadInfo, model: Any) -> Any:
        from peft import IA3Config

        p = self.params
        return IA3Config(task_type=task_type(head), target_modules=p.target_modules,
                         feedforward_modules=p.feedforward_modules, modules_to_save=list(head.head_modules))
