"""Scores for generated text: exact match through an answer extractor, and ROUGE-L (LCS F-measure)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, thousands separators and extra spaces: '1,000.' == '1000'."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.strip().lower())
    return " ".join(text.translate(_PUNCT).split())


def extract_answer(text: str, pattern: str | None) -> str | None:
    """The first capture group of `pattern` (or the whole match), None when it does not match; the whole text
    when there is no pattern."""
    if pattern is None:
        return text
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def exact_match(predictions: Sequence[str], references: Sequence[str], pattern: str | None = None) -> float:
    if not predictions:
        return 0.0
    hits = 0
    for pred, ref in zip(predictions, references, strict=True):
        p, r = extract_answer(pred, pattern), extract_answer(ref, pattern)
        hits += p is not None and r is not None and normalize_answer(p) == normalize_answer(r)
    return hits / len(predictions)


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased whitespace tokens (Lin, 2004; beta = 1)."""
    p, r = prediction.lower().split(), reference.lower().split()
    if not p or not r:
        return float(p == r)
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    scores = [rouge_l(p, r) for p, r in zip(predictions, references, strict=True)]
    return sum(scores) / len(scores) if scores else 0.0
