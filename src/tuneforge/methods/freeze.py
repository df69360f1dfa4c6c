"""Feature extraction: the pretrained backbone is frozen, only the new task head trains and is saved.

A causal LM has no new head: its output projection (lm_head) is the head that trains. When it shares its weight with
the input embeddings (tied), it is untied first so the frozen backbone really stays frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

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
        freeze_all_but(model, _trained_modules(model, head))
        return model

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        from safetensors.torch import save_file

        trained = HeadInfo(head.peft_task_type, _trained_modules(model, head))
        save_file(head_state_dict(model, trained), str(out_dir / HEAD_FILE))

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        _trained_modules(base_model, head)  # unties a causal LM's output projection, as training did
        load_partial(base_model, in_dir / HEAD_FILE)
        return base_model


def _trained_modules(model: Any, head: HeadInfo) -> tuple[str, ...]:
    """The task's head; for a causal LM (no new head), its output projection, untied from the input embeddings."""
    if head.head_modules or head.peft_task_type != "CAUSAL_LM":
        return head.head_modules
    import torch

    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    name = next(n for n, m in model.named_children() if m is out)
    if out.weight is inp.weight:
        out.weight = torch.nn.Parameter(out.weight.detach().clone())
        model.config.tie_word_embeddings = False  # a later tie_weights() must not share them again
    return (name,)


