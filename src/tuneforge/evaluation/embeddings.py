"""Frozen-encoder features for baselines: mean-pooled sentence vectors and per-word token vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def load_encoder(model_path: str) -> Any:
    from transformers import AutoModel

    from tuneforge.models.loading import from_pretrained

    model = from_pretrained(AutoModel, model_path)
    model.eval()
    return model


def _batches(n: int, size: int, order: list[int]) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, n, size)]


def sentence_embeddings(model: Any, tokenizer: Any, texts: list[str], max_length: int = 128,
                        batch_size: int = 128) -> np.ndarray:
    """L2-normalised mean-pooled embeddings (sentence-transformers' pooling for MiniLM), length-sorted batches."""
    return pooled_embeddings(model, tokenizer, texts, max_length, batch_size, mean=True)


def encoder_of(model: Any) -> tuple[Any, bool]:
    """The (possibly adapted) encoder inside a task model, and whether it pools by mean (else [CLS]).

    PEFT and tuneforge's adapters inject their layers into the encoder's modules in place, so the encoder found
    under the PEFT wrapper already computes the tuned representation."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    encoder = getattr(inner, getattr(inner, "base_model_prefix", ""), None) or inner
    mean = getattr(inner.config, "tuneforge_pooling", None) == "mean" or getattr(encoder, "pooler", 1) is None
    return encoder, mean


@torch.inference_mode()
def pooled_embeddings(model: Any, tokenizer: Any, texts: list[str], max_length: int = 128, batch_size: int = 128,
                      *, mean: bool = True) -> np.ndarray:
    """L2-normalised sentence vectors: masked mean of the last hidden states, or the first ([CLS]) token."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for idx in _batches(len(texts), batch_size, order):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(model.device)
        hidden = model(**enc).last_hidden_state
        if mean:
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            pooled = hidden[:, 0]
        out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
    return out


@torch.inference_mode()
def word_embeddings(model: Any, tokenizer: Any, sentences: list[list[str]], max_length: int = 128,
                    batch_size: int = 64) -> list[np.ndarray]:
    """First-sub-word hidden state of every word; words cut off by truncation get zero vectors."""
    result: list[np.ndarray] = [np.zeros((len(s), model.config.hidden_size), np.float32) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for idx in _batches(len(sentences), batch_size, order):
        enc = tokenizer([sentences[i] for i in idx], is_split_into_words=True, padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        hidden = model(**{k: v.to(model.device) for k, v in enc.items()}).last_hidden_state.float().cpu().numpy()
        for row, i in enumerate(idx):
            seen: set[int] = set()
            for pos, word in enumerate(enc.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    result[i][word] = hidden[row, pos]
    return result
