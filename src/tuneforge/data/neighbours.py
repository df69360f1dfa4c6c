"""Synonym candidates from a model's own input embeddings: the nearest whole words to a word, by cosine similarity.

Why not WordNet: it is not installed, is English only and knows nothing of the domain; the base model's embedding
matrix is at hand for every language the model reads. Only whole words are candidates (a vocabulary entry that
the tokenizer gives back as exactly one token when written as a separate word), so a replacement never inserts
a word piece such as '##ing'. The matrix is read straight from the safetensors files when they hold it (no need to
load a large model whole); otherwise the model is loaded once to take it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# EDA's stop words (NLTK's English list, shortened): never replaced, never the anchor of an insertion.
_STOP_WORDS_TEXT = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself "
    "it its itself they them their theirs themselves what which who whom this that these those am is are was were "
    "be been being have has had having do does did doing a an the and but if or because as until while of at by for "
    "with about against between into through during before after above below to from up down in out on off over "
    "under again further then once here there when where why how all any both each few more most other some such no "
    "nor not only own same so than too very s t can will just don should now")
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_EMBEDDING_NAMES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "shared.weight",
                    "embed_in.weight", "tok_embeddings.weight")
_MARKERS = ("Ġ", "▁")  # byte-level BPE and SentencePiece write a word's leading space into the token


def input_embeddings(model_path: str, trust_remote_code: bool = False) -> np.ndarray:
    """The (vocab, dim) input embedding matrix of a local model folder, as float32."""
    folder = Path(model_path)
    for file in sorted(folder.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(file), framework="np") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open objects have keys(), not iteration
                if key.endswith(_EMBEDDING_NAMES):
                    return np.asarray(fh.get_tensor(key), dtype=np.float32)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    return model.get_input_embeddings().weight.detach().float().numpy()


def whole_words(tokenizer: Any) -> dict[str, int]:
    """word -> token id for the vocabulary entries that are whole alphabetic words (2+ letters) on their own."""
    candidates: dict[str, int] = {}
    for token, token_id in tokenizer.get_vocab().items():
        word = token[1:] if token.startswith(_MARKERS) else token
        if len(word) >= 2 and word.isalpha() and word not in candidates:
            candidates[word] = token_id
    words = list(candidates)
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"] if words else []
    return {w: ids[0] for w, ids in zip(words, encoded, strict=True) if len(ids) == 1}


class EmbeddingNeighbours:
    """`synonyms(word)`: up to k nearest whole words with cosine similarity >= min_similarity (stop words, the word
    itself and its case variants excluded), nearest first. Results are cached per word."""

    def __init__(self, embeddings: np.ndarray, tokenizer: Any, k: int, min_similarity: float) -> None:
        vocab = whole_words(tokenizer)
        vocab = {w: i for w, i in vocab.items() if i < len(embeddings)}
        self.words = list(vocab)
        self.index = {w: n for n, w in enumerate(self.words)}
        matrix = embeddings[[vocab[w] for w in self.words]] if self.words else np.zeros((0, embeddings.shape[1]))
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.unit = matrix / np.where(norms > 0, norms, 1.0)
        self.k, self.min_similarity = k, min_similarity
        self.synonyms = lru_cache(maxsize=None)(self._synonyms)

    @classmethod
    def from_model(cls, model_path: str, k: int, min_similarity: float,
                   trust_remote_code: bool = False) -> EmbeddingNeighbours:
        return _from_model(str(model_path), int(k), float(min_similarity), bool(trust_remote_code))

    def _synonyms(self, word: str) -> list[str]:
        row = self.index.get(word)
        if row is None or word.lower() in STOP_WORDS:
            return []
        sims = self.unit @ self.unit[row]
        order = np.argsort(-sims, kind="stable")
        out: list[str] = []
        for n in order[: self.k + 8]:  # a few spare: the word itself and its case variants are skipped
            candidate = self.words[n]
            if sims[n] < self.min_similarity or len(out) >= self.k:
                break
            if candidate.lower() != word.lower() and candidate.lower() not in STOP_WORDS:
                out.append(candidate)
        return out


@lru_cache(maxsize=4)  # one process preparing twice (keep: if_better) reads the matrix once
def _from_model(model_path: str, k: int, min_similarity: float, trust_remote_code: bool) -> EmbeddingNeighbours:
    from tuneforge.models.loading import load_tokenizer

    return EmbeddingNeighbours(input_embeddings(model_path, trust_remote_code),
                               load_tokenizer(model_path, trust_remote_code), k, min_similarity)
