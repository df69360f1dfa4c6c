"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), which PEFT does not provide.

A small down-project -> nonlinearity -> up-project block with a residual connection is applied to the output of each
sub-layer's output projection, before the model's own residual add and layer norm. Houlsby places one after the
attention block and one after the feed-forward block of every layer; Pfeiffer only after the feed-forward block.
The up-projection starts at zero, so the adapted model is exactly the pretrained model at step 0.

Adapters are attached as child modules of the projection they follow and run through a forward hook, so the base
model's own parameter names are unchanged and only `*.adapter.*` tensors (plus the head) are saved.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from safetensors.torch import save_file
from torch import nn

from tuneforge.errors import ConfigError
from tuneforge.methods.base import METHODS, HeadInfo, Method, MethodParams, freeze_all_but, load_partial

ADAPTER_FILE = "adapter.safetensors"

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


class AdapterParams(MethodParams):
    name: Literal["adapter"] = "adapter"
    placement: Literal["houlsby", "pfeiffer"] = Field("houlsby", description="houlsby: attn+FFN; pfeiffer: FFN.")
    reduction_factor: int = Field(16, ge=1, description="Bottleneck size = hidden size / reduction_factor.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    attn_pattern: str | None = Field(None, description="Regex for attention output projections (override).")
    ffn_pattern: str | None = Field(None, description="Regex for feed-forward output projections (override).")
    default_learning_rate: ClassVar[float] = 1e-3


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


def insert_adapters(model: nn.Module, params: AdapterParams) -> list[str]:
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


@METHODS.register
class Adapter(Method):
    name = "adapter"
    new_parameter_markers = (".adapter.",)
    Params = AdapterParams

    def apply(self, model: Any, head: HeadInfo) -> Any:
        insert_adapters(model, self.params)  # type: ignore[arg-type]
        freeze_all_but(model, head.head_modules)
        for name, param in model.named_parameters():
            if ".adapter." in name:
                param.requires_grad = True
        return model

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                 if ".adapter." in k or k.split(".")[0] in head.head_modules}
        save_file(state, str(out_dir / ADAPTER_FILE))

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        insert_adapters(base_model, self.params)  # type: ignore[arg-type]
        load_partial(base_model, in_dir / ADAPTER_FILE)
        return base_model
