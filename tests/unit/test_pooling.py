"""Mean pooling replaces BERT's [CLS] pooler only where the model was trained that way."""

from __future__ import annotations

from pathlib import Path

import torch

from tuneforge.models._mean_pooler import MaskedMeanPooler
from tuneforge.models.loading import default_model_path
from tuneforge.models.pooling import declares_mean_pooling, use_mean_pooling


def test_masked_mean_ignores_padding() -> None:
    pooler = MaskedMeanPooler()
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    pooler.mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pooler(hidden), torch.tensor([[2.0, 2.0]]))


def test_default_minilm_declares_mean_pooling(tiny_bert: Path) -> None:
    assert declares_mean_pooling(str(default_model_path()))
    assert not declares_mean_pooling(str(tiny_bert))


def test_padding_does_not_change_pooled_logits(tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2).eval()
    assert use_mean_pooling(model)
    alone = tokenizer(["short text"], return_tensors="pt")
    padded = tokenizer(["short text", "a much longer text that forces padding on the first"], padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**alone).logits[0], model(**padded).logits[0], rtol=1e-4, atol=1e-5)
