"""Shared save/load for the methods that PEFT implements (LoRA, DoRA, IA3, prompt tuning, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.methods.base import HeadInfo, Method


class PeftMethod(Method):
    """A method whose `peft_config` builds a PEFT config; PEFT wraps, saves (safetensors) and reloads."""

    library_name = "peft"
    new_parameter_markers = ("modules_to_save",)

    def peft_config(self, head: HeadInfo, model: Any) -> Any:
        raise NotImplementedError

    def apply(self, model: Any, head: HeadInfo) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(head, model))

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        model.save_pretrained(str(out_dir), safe_serialization=True)

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(in_dir), is_trainable=False)

    def load_for_training(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        from peft import PeftModel

        # is_trainable: the adapter (and the head in modules_to_save) keep training; the base stays frozen.
        return PeftModel.from_pretrained(base_model, str(in_dir), is_trainable=True)

    def merge(self, model: Any) -> Any:
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def task_type(head: HeadInfo) -> Any:
    from peft import TaskType

    return TaskType[head.peft_task_type] if head.peft_task_type else None
