"""DoRA: LoRA on the direction of each weight plus a trained magnitude vector (PEFT's use_dora)."""

from __future__ import annotations

from typing import ClassVar, Literal

from tuneforge.methods.base import METHODS
from tuneforge.methods.lora import Lora, LoraParams


class DoraParams(LoraParams):
    name: Literal["dora"] = "dora"  # type: ignore[assignment]
    default_learning_rate: ClassVar[float] = 5e-4


@METHODS.register
class Dora(Lora):
    name = "dora"
    Params = DoraParams
    use_dora = True
