"""Prompt tuning: trainable virtual tokens prepended to the input; the model is frozen, the head trains."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.methods._peft_common import PeftMethod, task_type
from tuneforge.methods.base import METHODS, HeadInfo, MethodParams


class PromptTuningParams(MethodParams):
    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: str | None = Field(None, description="Initialise the virtual tokens from this text's embeddings.")
    default_learning_rate: ClassVar[float] = 3e-3


@METHODS.register
class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    new_parameter_markers = ("prompt_encoder", "modules_to_save")
    Params = PromptTuningParams
    prepends_virtual_tokens = True

    def peft_config(self, head: HeadInfo, model: Any) -> Any:
        from peft import PromptTuningConfig, PromptTuningInit

        p = self.params
        kwargs: dict[str, Any] = {}
        if p.init_text:
            kwargs = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": p.init_text,
                      "tokenizer_name_or_path": model.config.name_or_path}
        config = PromptTuningConfig(task_type=task_type(head), num_virtual_tokens=p.num_virtual_tokens, **kwargs)
        # PEFT keeps the classification head trainable through modules_to_save for SEQ_CLS/TOKEN_CLS.
        config.modules_to_save = list(head.head_modules)
        return config
