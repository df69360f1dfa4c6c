"""The GPU fast path for packed causal-LM training (sft, distillation): decided once per run, applied to the model.

What it switches on, each only where it applies:
- padding-free packed attention: FlashAttention-2 varlen when `flash_attn` is installed, else PyTorch
  flex-attention; both read example boundaries from the restarting position_ids, so no dense block-diagonal mask is
  built (sdpa, the standard path, materialises one per batch);
- liger-kernel (optional extra `tuneforge[fast]`): fused RMSNorm, RoPE, SwiGLU and a fused linear cross-entropy that
  never materialises the (tokens x vocab) logits;
- torch.compile of each decoder layer, with packed rows padded to a fixed token bucket so shapes do not recompile;
- gradient checkpointing only when the estimated activations do not fit in free GPU memory; bf16; fused AdamW.

Where it does not apply (CPU, an architecture without these kernels, packing off, a method feeding a KV prefix),
the standard path runs and one log line says why. `training.fast_path: require` turns that line into an error.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

# Decoder architectures whose attention and MLP blocks the fast path's kernels cover (liger has patches for these).
FAST_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo2", "granite")


@dataclass
class FastPath:
    enabled: bool
    reason: str  # why it is off, or what it switched on
    attention: str | None = None
    liger: bool = False
    compile: bool = False
    gradient_checkpointing: bool = False
    bucket: int | None = None  # packed rows are padded to this many tokens (static shapes for compile)
    notes: list[str] = field(default_factory=list)

    def load_kwargs(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        import torch

        return {"attn_implementation": self.attention, "dtype": torch.bfloat16}

    def summary(self) -> str:
        if not self.enabled:
            return f"fast path off: {self.reason}"
        parts = [f"attention={self.attention}", f"liger={'on' if self.liger else 'off (not installed)'}",
                 f"compile={'on' if self.compile else 'off'}", f"bucket={self.bucket}",
                 f"gradient checkpointing={'on' if self.gradient_checkpointing else 'off'}"]
        return "fast path on: " + ", ".join(parts)


def _model_type(model_path: str) -> str | None:
    config = Path(model_path) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def decide(cfg: Any, task: Any, method: Any, model_path: str, cuda: bool | None = None) -> FastPath:
    """Decide the fast path for a run (before the model loads). `cuda` overrides detection (tests)."""
    import torch

    mode = cfg.training.fast_path
    cuda = torch.cuda.is_available() and cfg.training.device in ("auto", "cuda") if cuda is None else cuda
    arch = _model_type(model_path)
    reason = None
    if mode == "off":
        reason = "training.fast_path is off"
    elif not getattr(task, "supports_fast_path", False):
        reason = f"task {task.name!r} has no packed causal-LM batches"
    elif not cuda:
        reason = "no CUDA GPU (the standard path runs on CPU)"
    elif not getattr(cfg.task, "packing", False):
        reason = "task.packing is off (the fast path trains on packed rows)"
    elif method.uses_kv_prefix or method.prepends_virtual_tokens:
        reason = f"method {method.name!r} adds virtual tokens or a KV prefix"
    elif arch not in FAST_ARCHITECTURES:
        reason = f"architecture {arch!r} is not one of {', '.join(FAST_ARCHITECTURES)}"
    if reason is not None:
        if mode == "require":
            raise ConfigError(f"the fast path cannot run: {reason}", key="training.fast_path",
                              fix="set training.fast_path: auto to fall back to the standard path")
        return FastPath(False, reason)
    attention = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "flex_attention"
    liger = importlib.util.find_spec("liger_kernel") is not None
    bucket = cfg.data.max_length  # BFD fills rows to capacity, so padding every row to it wastes little
    return FastPath(True, "on", attention=attention, liger=liger, compile=True, bucket=bucket)


def activation_bytes_per_token(hidden: int, layers: int, intermediate: int) -> int:
    """bf16 activations kept for backward per token without checkpointing (attention scores not stored, as with
    flash/flex attention): per layer ~ 2 bytes x (12 hidden-sized tensors + 3 MLP-sized ones), after Korthikanti et
    al. 2022 with the MLP widened for SwiGLU; LoRA adds its r-sized inputs, which are negligible."""
    return layers * 2 * (12 * hidden + 3 * intermediate)


def needs_checkpointing(model: Any, tokens_per_step: int, free_bytes: int, reserve: float = 0.15) -> bool:
    """True when the activations of one micro-batch would not fit next to what is already allocated."""
    c = model.config
    per_token = activation_bytes_per_token(c.hidden_size, c.num_hidden_layers,
                                           getattr(c, "intermediate_size", 4 * c.hidden_size))
    return per_token * tokens_per_step > free_bytes * (1 - reserve)


def decoder_layers(model: Any) -> list[Any]:
    """The transformer blocks of a (possibly PEFT-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", base)
    return list(getattr(inner, "layers", []))


def apply_before_method(model: Any, fast: FastPath) -> Any:
    """Kernel patches that must see the plain transformers model (before PEFT wraps it)."""
    if fast.enabled and fast.liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    return model


def apply_after_method(model: Any, fast: FastPath, tokens_per_step: int) -> Any:
    """Compile each decoder layer (after adapters are in place) and choose gradient checkpointing by memory."""
    if not fast.enabled:
        return model
    import torch

    free, _ = torch.cuda.mem_get_info()
    fast.gradient_checkpointing = needs_checkpointing(model, tokens_per_step, free)
    if fast.compile:
        for layer in decoder_layers(model):
            layer.compile(dynamic=False)
    return model
