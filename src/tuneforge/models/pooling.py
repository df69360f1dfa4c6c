"""Mean pooling for encoder classification heads.

BERT-style sequence classifiers read the [CLS] vector through the `pooler`. Sentence-embedding encoders such as
all-MiniLM-L6-v2 were trained with *mean* pooling instead (their `1_Pooling/config.json` says so), and their [CLS]
vector is a poor feature: a frozen-backbone head on it reaches ~65% where a probe on mean-pooled features reaches
~95% (support-intent demo). Swapping the pooler for a masked mean keeps the stock transformers model class; the
pooler's own weights are simply not used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def declares_mean_pooling(model_path: str) -> bool:
    """True for sentence-transformers folders that pool by mean, or models tuneforge saved with mean pooling."""
    folder = Path(model_path)
    st = folder / "1_Pooling" / "config.json"
    if st.is_file():
        return bool(json.loads(st.read_text()).get("pooling_mode_mean_tokens"))
    cfg = folder / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("tuneforge_pooling") == "mean"


def use_mean_pooling(model: Any) -> bool:
    """Replace the encoder's pooler by a masked mean; False when the architecture has no pooler to replace."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is None or getattr(base, "pooler", None) is None:
        return False
    from tuneforge.models._mean_pooler import MaskedMeanPooler

    pooler = MaskedMeanPooler()
    base.pooler = pooler

    def grab_mask(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    base.register_forward_pre_hook(grab_mask, with_kwargs=True)
    model.config.tuneforge_pooling = "mean"
    return True
