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


def _spm_merge(text: str, vocab: dict[str, int], scores: list[float]) -> list[int]:
    """llama.cpp's 'llama' tokenizer (llm_tokenizer_spm), without byte fallback: join the adjacent pair whose
    joined token scores highest (leftmost on ties) until no pair joins into a vocabulary token."""
    pieces = list("▁" + text.replace(" ", "▁"))
    while True:
        best = None
        for i in range(len(pieces) - 1):
            joined = pieces[i] + pieces[i + 1]
            if joined in vocab and (best is None or scores[vocab[joined]] > scores[vocab[best[1]]]):
                best = (i, joined)
        if best is None:
            return [vocab[p] for p in pieces]
        pieces[best[0]:best[0] + 2] = [best[1]]


def test_llama_vocab_scores_make_llama_cpp_merge_like_the_bpe() -> None:
    """TinyStories' tokenizer.json (byte-fallback BPE, no tokenizer.model): with gguf's flat -1000 scores the
    SentencePiece-style merge llama.cpp runs gives other ids than transformers; with merge-rank scores the same."""
    from conftest import SHARED

    folder = SHARED / "models" / "tinystories-656k"
    if not folder.is_dir():
        pytest.skip("../shared/models/tinystories-656k not present")
    from transformers import AutoTokenizer

    from tuneforge.export.gguf import bpe_merge_scores

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    scores = bpe_merge_scores(folder, tokens)
    texts = ["Tell me a story about a fish called Sam.", "Once upon a time, there was a little dog named Tim.",
             "The bunny liked to play in the park with her friends"]
    for text in texts:
        assert _spm_merge(text, vocab, scores) == tokenizer(text, add_special_tokens=False).input_ids, text
    flat = [-1000.0] * len(tokens)
    assert any(_spm_merge(t, vocab, flat) != tokenizer(t, add_special_tokens=False).input_ids for t in texts)
