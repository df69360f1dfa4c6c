"""The GGUF writer names the byte-level BPE pre-tokenizer llama.cpp must use (`tokenizer.ggml.pre`): with the
'default' name llama.cpp splits digits and punctuation otherwise than GPT-2 style tokenizers, so prompts would
become other tokens than the run saw."""

from __future__ import annotations

import pytest


def _tokenizer(pre_tokenizer: object) -> object:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    bpe.pre_tokenizer = pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


@pytest.mark.parametrize("case", ["gpt-2", "smollm", "llama-bpe", "default"])
def test_pre_tokenizer_name_follows_the_tokenizer_structure(case: str) -> None:
    from tokenizers import Regex, pre_tokenizers

    from tuneforge.export.gguf import LLAMA3_SPLIT, pre_tokenizer_name

    built = {
        "gpt-2": pre_tokenizers.ByteLevel(add_prefix_space=False),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False)]),
        "llama-bpe": pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        "default": pre_tokenizers.Whitespace(),
    }[case]
    assert pre_tokenizer_name(_tokenizer(built)) == case
    if case == "smollm":  # digits kept together are a different pre-tokenizer: not SmolLM's
        grouped = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False)])
        assert pre_tokenizer_name(_tokenizer(grouped)) == "default"
