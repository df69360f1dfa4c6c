"""Catastrophic-forgetting measurement: language-model loss on a reference set of general text, before and after.

The reference set is the user's own text, or by default a seeded sample of the base model's own generations: text
the base model finds likely, so any rise in its loss after fine-tuning is knowledge (or fluency) lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tuneforge.errors import DataError


def sample_reference(model: Any, tokenizer: Any, n: int, max_new_tokens: int, seed: int) -> list[str]:
    """`n` seeded samples (temperature 1) of the base model's own text, each started from BOS alone."""
    device = next(model.parameters()).device
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        ids = torch.full((n, 1), start, dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                 top_k=0, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
    finally:
        torch.random.set_rng_state(generator_state)  # training randomness must not depend on this sampling
    texts = [tokenizer.decode(row[1:], skip_special_tokens=True).strip() for row in out]
    return [t for t in texts if t]


def read_reference(path: str, column: str = "text") -> list[str]:
    texts = []
    file = Path(path)
    if not file.is_file():
        raise DataError("reference file not found", file=path, fix="set task.forgetting.reference to a JSONL file")
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line).get(column)
        except (json.JSONDecodeError, AttributeError):
            raise DataError("expected a JSON object per line", file=path, line=number,
                            fix=f'e.g. {{"{column}": "some general text"}}') from None
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"missing or empty '{column}'", file=path, line=number, fix=f"give every line a '{column}'")
        texts.append(value)
    return texts


@torch.inference_mode()
def lm_loss(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 16) -> float:
    """Mean next-token negative log-likelihood over every token of `texts`."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        logits = model(**enc, use_cache=False).logits.float()[:, :-1]
        target = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                         ignore_index=-100, reduction="sum"))
        count += int((target != -100).sum())
    return total / max(count, 1)
