"""QLoRA: LoRA adapters on a 4-bit (NF4) quantised, frozen base model. Needs a CUDA GPU and bitsandbytes."""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.errors import ConfigError
from tuneforge.methods.base import METHODS, HeadInfo
from tuneforge.methods.lora import Lora, LoraParams


class QLoraParams(LoraParams):
    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    default_learning_rate: ClassVar[float] = 2e-4


@METHODS.register
class QLora(Lora):
    name = "qlora"
    Params = QLoraParams
    quantized_base = True
    needs_cuda = True

    def compute_dtype(self) -> str | None:
        return self.params.compute_dtype

    def apply_for_counting(self, model: Any, head: HeadInfo) -> Any:
        # qlora's own apply prepares a really quantised model; on the meta model its LoRA half is the same.
        return Lora.apply(self, model, head)

    def check_environment(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); this machine has none",
                              key="method.name", fix="use lora (same adapters, full-precision base) on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("qlora needs the bitsandbytes package", key="method.name",
                              fix="pip install bitsandbytes")

    def load_kwargs(self) -> dict[str, Any]:
        import torch
        from transformers import BitsAndBytesConfig

        p = self.params
        dtype = getattr(torch, p.compute_dtype)
        return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=p.quant_type,
                                                          bnb_4bit_use_double_quant=p.double_quant,
                                                          bnb_4bit_compute_dtype=dtype), "dtype": dtype}

    def load_for_training(self, base_model: Any, in_dir: Any, head: HeadInfo) -> Any:
        from peft import prepare_model_for_kbit_training

        base_model = prepare_model_for_kbit_training(base_model, use_gradient_checkpointing=False)
        return Lora.load_for_training(self, base_model, in_dir, head)

    def apply(self, model: Any, head: HeadInfo) -> Any:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().apply(model, head)
