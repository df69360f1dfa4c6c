"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), which PEFT does not provide.

A small down-project -> nonlinearity -> up-project block with a residual connection is applied to the output of each
sub-layer's output projection, before the model's own residual add and layer norm. Houlsby places one after the
attention block and one after the feed-forward block of every layer; Pfeiffer only after the feed-forward block.
The up-projection starts at zero, so the adapted model is exactly the pretrained model at step 0.

Adapters are attached as child modules of the projection they follow and run through a forward hook, so the base
model's own parameter names are unchanged and only `*.adapter.*` tensors (plus the head) are saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.methods.base import METHODS, HeadInfo, Method, MethodParams, freeze_all_but, load_partial

ADAPTER_FILE = "adapter.safetensors"

class AdapterParams(MethodParams):
    name: Literal["adapter"] = "adapter"
    placement: Literal["houlsby", "pfeiffer"] = Field("houlsby", description="houlsby: attn+FFN; pfeiffer: FFN.")
    reduction_factor: int = Field(16, ge=1, description="Bottleneck size = hidden size / reduction_factor.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    attn_pattern: str | None = Field(None, description="Regex for attention output projections (override).")
    ffn_pattern: str | None = Field(None, description="Regex for feed-forward output projections (override).")
    default_learning_rate: ClassVar[float] = 1e-3


def insert_adapters(model: Any, params: AdapterParams) -> list[str]:
    """Attach adapters in place; returns the names of the adapted projections."""
    from tuneforge.methods._bottleneck_layers import insert_adapters as insert

    return insert(model, params)


@METHODS.register
class Adapter(Method):
    name = "adapter"
    new_parameter_markers = (".adapter.",)
    Params = AdapterParams

    def apply(self, model: Any, head: HeadInfo) -> Any:
        insert_adapters(model, self.params)  # type: ignore[arg-type]
        _train_adapters_and_head(model, head)
        return model

    def save(self, model: Any, out_dir: Path, head: HeadInfo) -> None:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                 if ".adapter." in k or k.split(".")[0] in head.head_modules}
        from safetensors.torch import save_file

        save_file(state, str(out_dir / ADAPTER_FILE))

    def load(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        insert_adapters(base_model, self.params)  # type: ignore[arg-type]
        load_partial(base_model, in_dir / ADAPTER_FILE)
        return base_model

    def load_for_training(self, base_model: Any, in_dir: Path, head: HeadInfo) -> Any:
        model = self.load(base_model, in_dir, head)  # apply() would insert a second set of adapters
        _train_adapters_and_head(model, head)
        return model


def _train_adapters_and_head(model: Any, head: HeadInfo) -> None:
    freeze_all_but(model, head.head_modules)
    for name, param in model.named_parameters():
        if ".adapter." in name:
            param.requires_grad = True
