"""Generation scores: answer extraction, exact match normalisation, ROUGE-L."""

from __future__ import annotations

import pytest

from tuneforge.evaluation.generation import exact_match, extract_answer, rouge_l

GSM8K = r"####\s*(-?[\d,\.]+)"


def test_gsm8k_extractor_and_exact_match() -> None:
    assert extract_answer("so 6 + 4 = 10\n#### 1,000", GSM8K) == "1,000"
    assert extract_answer("no final answer", GSM8K) is None
    preds = ["... #### 1000", "#### 7", "I think 12"]
    refs = ["#### 1,000", "#### 8", "#### 12"]
    assert exact_match(preds, refs, GSM8K) == pytest.approx(1 / 3)  # unmatched extraction is a miss


def test_exact_match_without_extractor_ignores_case_and_punctuation() -> None:
    assert exact_match(["Your refund is on its way!"], ["your refund is on its way"]) == 1.0


def test_rouge_l_known_values() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("a b c", "x y z") == 0.0
    # LCS("the cat was found under the bed", "the cat was under the bed") = 6: P = 6/7, R = 1
    assert rouge_l("the cat was found under the bed", "the cat was under the bed") == pytest.approx(12 / 13)
