"""Prefix tuning: trained key/value prefixes at every layer (PEFT); the base model is frozen, the head trains."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.methods._peft_common import PeftMethod, task_type
from tuneforge.methods.base import METHODS, HeadInfo, MethodParams


class PrefixTuningParams(MethodParams):
    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    projection: bool = Field(False, description="Reparameterise the prefix through an MLP (more stable).")
    default_learning_rate: ClassVar[float] = 1e-2


@METHODS.register
class PrefixTuning(PeftMethod):
    name = "prefix_tuning"
    new_parameter_markers = ("prompt_encoder", "modules_to_save")
    Params = PrefixTuningParams
    uses_kv_prefix = True
    # transformers 5 encoders and sequence classifiers no longer take past_key_values: causal LMs only.
    supported_task_types = ("CAUSAL_LM",)

    def peft_config(self, head: HeadInfo, model: Any) -> Any:
        from peft import PrefixTuningConfig

        p = self.params
        config = PrefixTuningConfig(task_type=task_type(head), num_virtual_tokens=p.num_virtual_tokens,
                                    prefix_projection=p.projection)
        config.modules_to_save = list(head.head_modules)
        return config
