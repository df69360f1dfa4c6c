"""LoRA: low-rank updates on (by default) every linear layer; the new head trains fully."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.methods._peft_common import PeftMethod, task_type
from tuneforge.methods.base import METHODS, HeadInfo, MethodParams


class LoraParams(MethodParams):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: float = Field(16, gt=0, description="Scaling: updates are multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="Module names, or 'all-linear'.")
    default_learning_rate: ClassVar[float] = 5e-4


@METHODS.register
class Lora(PeftMethod):
    name = "lora"
    new_parameter_markers = ("lora_", "modules_to_save")
    Params = LoraParams
    use_dora: ClassVar[bool] = False

    def peft_config(self, head: HeadInfo, model: Any) -> Any:
        from peft import LoraConfig

        p = self.params
        return LoraConfig(task_type=task_type(head), r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                          target_modules=p.target_modules, modules_to_save=list(head.head_modules),
                          use_dora=self.use_dora)
