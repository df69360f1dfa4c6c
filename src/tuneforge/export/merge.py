"""`merged`: what the method trained folded into the base weights, saved as a plain Hugging Face folder.

LoRA, DoRA and IA3 are linear corrections of existing weights (W + BA, a rescaled W, W scaled per channel), so
PEFT's `merge_and_unload` folds them in exactly. Full and freeze runs already are plain models. tuneforge's own
bottleneck `adapter` puts a non-linear layer (down-projection, activation, up-projection) after a sublayer, and
prefix/prompt tuning feed trained vectors as extra inputs: neither can be written as changed linear weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.export._common import ExportError

NOT_FOLDABLE = {
    "adapter": "its bottleneck layers (down-projection, activation, up-projection) are a non-linear function "
               "added after each sublayer, which cannot be folded into the base model's linear weights",
    "prefix_tuning": "its trained key/value prefixes are extra attention inputs, not changes to weights",
    "prompt_tuning": "its trained virtual tokens are extra inputs, not changes to weights",
}


def check_foldable(run: Any) -> None:
    reason = NOT_FOLDABLE.get(run.method.name)
    if reason:
        raise ExportError(f"run {run.name} was trained with method '{run.method.name}': {reason}",
                          fix="serve the run with tuneforge itself, or train with method lora/dora/ia3/full to "
                              "get a run that can be merged")


@dataclass
class Merged:
    model: Any  # a plain fp32 transformers model
    tokenizer: Any
    chat_template: tuple[str, str] | None  # (name, jinja source) for generative runs


def merged_model(run: Any) -> Merged:
    """A plain fp32 transformers model equal to the run's model. The run's own copy is released: merging changes
    the module tree in place, and the next `run.model()` must load the run as it was trained."""
    from peft import PeftModel

    check_foldable(run)
    tokenizer = run.tokenizer
    template = run.chat_template() if run.generative else None
    model = run.method.merge(run.model())
    run.release()
    if isinstance(model, PeftModel):  # a PEFT method without merge support (a safety net for new methods)
        raise ExportError(f"run {run.name}: PEFT cannot merge method '{run.method.name}'",
                          fix="serve the run with tuneforge itself")
    model = model.float().eval()
    if run.generative:
        model.config.use_cache = True  # training turned the KV cache off; inference wants it
    return Merged(model, tokenizer, template)


def save_hf_folder(merged: Merged, out: Path) -> Path:
    """safetensors weights, config, tokenizer and (generative runs) the run's chat template, loadable by
    `AutoModelFor...from_pretrained(out)` without tuneforge."""
    out.mkdir(parents=True, exist_ok=True)
    merged.model.save_pretrained(str(out), safe_serialization=True)
    if merged.chat_template is not None:
        merged.tokenizer.chat_template = merged.chat_template[1]
    merged.tokenizer.save_pretrained(str(out))
    return out


def uses_mean_pooling(model: Any) -> bool:
    """Mean-pooled classifiers (tuneforge's swap for sentence-transformers bases) are not stock transformers:
    plain `from_pretrained` would pool [CLS] through an untrained pooler."""
    return getattr(model.config, "tuneforge_pooling", None) == "mean"


MEAN_POOLING_CODE = "tuneforge_mean_pooling.py"
_MEAN_POOLING_SOURCE = '''"""Written by tuneforge export: {arch} with the masked-mean pooling it was fine-tuned
with, in place of the [CLS] pooler. Loaded by
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`; needs torch and transformers."""

import torch
import transformers


class MaskedMeanPooler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mask = None

    def forward(self, hidden_states):
        if self.mask is None or self.mask.shape[:2] != hidden_states.shape[:2]:
            return hidden_states.mean(dim=1)
        weights = self.mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MeanPooled{arch}(transformers.{arch}):
    def __init__(self, config):
        super().__init__(config)
        encoder = getattr(self, self.base_model_prefix)
        pooler = MaskedMeanPooler()
        encoder.pooler = pooler

        def grab_mask(_module, args, kwargs):
            pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

        encoder.register_forward_pre_hook(grab_mask, with_kwargs=True)
'''


def _write_mean_pooling_code(model: Any, out: Path) -> None:
    """Mean-pooled classifiers load in plain transformers through a small remote-code class written beside the
    weights (readable, 30 lines, torch + transformers only), named in config.json's auto_map."""
    import json

    arch = type(model).__name__
    (out / MEAN_POOLING_CODE).write_text(_MEAN_POOLING_SOURCE.format(arch=arch))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": f"{MEAN_POOLING_CODE[:-3]}.MeanPooled{arch}"}
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def export_merged(run: Any, out: Path) -> dict[str, Any]:
    merged = merged_model(run)
    save_hf_folder(merged, out)
    model = merged.model
    notes = []
    mean = uses_mean_pooling(model) and run.task.name == "classification"
    if mean:
        _write_mean_pooling_code(model, out)
        notes.append(f"mean pooling: stock {type(model).__name__} pools [CLS], so the folder carries "
                     f"{MEAN_POOLING_CODE}; load with AutoModelForSequenceClassification.from_pretrained(folder, "
                     "trust_remote_code=True) (or tuneforge.export.load_export)")
    return {"files": sorted(p.name for p in out.iterdir()), "format": "safetensors", "dtype": "float32",
            "plain_transformers": "trust_remote_code" if mean else True, "notes": notes}
