"""The bottleneck adapter layers themselves (torch modules), attached to a model by `insert_adapters`.

Kept apart from methods/adapter.py so that reading a config (which imports every method's settings) needs no torch.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from tuneforge.errors import ConfigError

# Output projections of the attention and feed-forward sub-layers, per architecture family.
_TARGETS: dict[str, tuple[str, str]] = {
    "bert": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "roberta": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "xlm-roberta": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "electra": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "distilbert": (r"attention\.out_lin$", r"ffn\.lin2$"),
    "llama": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "mistral": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "qwen2": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "qwen3": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "gemma": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "gpt2": (r"attn\.c_proj$", r"mlp\.c_proj$"),
}



class BottleneckAdapter(nn.Module):
    def __init__(self, hidden: int, bottleneck: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # identity at initialisation
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.dropout(self.act(self.down(hidden))))


def _run_adapter(module: nn.Module, _inputs: Any, output: Any) -> Any:
    if isinstance(output, tuple):  # some projections return (hidden, extra)
        return (module.adapter(output[0]), *output[1:])
    return module.adapter(output)


def _out_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)  # GPT-2's Conv1D stores (in, out)
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[1] if type(module).__name__ == "Conv1D" else weight.shape[0])
    raise ConfigError(f"cannot read the output size of {type(module).__name__}", key="method.ffn_pattern")


def insert_adapters(model: nn.Module, params: Any) -> list[str]:
    """Attach adapters in place; returns the names of the adapted projections."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    default = _TARGETS.get(model_type)
    attn = params.attn_pattern or (default[0] if default else None)
    ffn = params.ffn_pattern or (default[1] if default else None)
    if ffn is None or (params.placement == "houlsby" and attn is None):
        raise ConfigError(f"no default adapter placement for model type {model_type!r}", key="method.ffn_pattern",
                          fix="set method.attn_pattern and method.ffn_pattern to regexes of the output projections")
    try:
        patterns = [re.compile(ffn)] + ([re.compile(attn)] if params.placement == "houlsby" and attn else [])
    except re.error as exc:
        raise ConfigError(f"invalid regex ({exc})", key="method.attn_pattern / method.ffn_pattern",
                          fix="write a Python regular expression matching module names") from None
    adapted = []
    for name, module in list(model.named_modules()):
        if any(p.search(name) for p in patterns) and not hasattr(module, "adapter"):
            hidden = _out_features(module)
            bottleneck = max(1, hidden // params.reduction_factor)
            ref = next(module.parameters())
            module.adapter = BottleneckAdapter(hidden, bottleneck, params.activation, params.dropout).to(
                device=ref.device, dtype=ref.dtype)
            module.register_forward_hook(_run_adapter)
            adapted.append(name)
    if not adapted:
        raise ConfigError(f"the adapter patterns matched no module of this {model_type!r} model",
                          key="method.ffn_pattern", fix="check the regexes against model.named_modules()")
    return adapted
