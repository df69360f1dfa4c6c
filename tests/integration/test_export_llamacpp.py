"""llama.cpp itself (llama-cpp-python) runs a GGUF exported from a tuneforge causal run: it tokenises the run's
rendered prompts into the run's token ids and, for f16, its greedy 32 tokens equal transformers' on 10 prompts
(q8_0: equal up to a near-tie, see `_assert_same_or_near_tie`).

Both tokenizer paths of the GGUF writer: the real TinyStories-656K from ../shared (a SentencePiece-style
byte-fallback BPE: GGUF tokenizer 'llama') and the tiny Llama the tests build (a byte-level BPE with ChatML
special tokens: GGUF tokenizer 'gpt2', pre-tokenizer 'gpt-2').
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED, write_jsonl

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'tuneforge[llamacpp]'")

STORIES = SHARED / "models" / "tinystories-656k"
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "bear", "duck", "fish", "lion", "mouse"]
NAMES = ["Tim", "Lily", "Sam", "Mia", "Ben", "Sue", "Max", "Anna", "Tom", "Lucy"]
NEW_TOKENS = 32


def _train(tmp: Path, model: Path, rows: list[dict[str, Any]], **training: Any) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    cfg = {"name": "lm", "output_dir": str(tmp / "runs"), "model": {"path": str(model)},
           "data": {"train": str(write_jsonl(tmp / "train.jsonl", rows)), "max_length": 160},
           "task": {"name": "sft", "max_new_tokens": NEW_TOKENS, "eval_generations": 1},
           "method": {"name": "lora"},
           "training": {"epochs": 1, "batch_size": 4, "seed": 1, "threads": 1, **training},
           "tracking": {"mlflow": False}, "evaluation": {"baselines": []}}
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / "lm"


def _story_rows() -> list[dict[str, str]]:
    return [{"prompt": f"Tell me a story about a {a} called {n}.",
             "completion": f"Once upon a time, there was a little {a} named {n}. {n} liked to play in the park."}
            for a in ANIMALS for n in NAMES]


def _prompts(run: Any, questions: list[str]) -> list[str]:
    from tuneforge.tasks.chat_templates import render

    template = run.chat_template()[1]
    return [render(run.tokenizer, template, [{"role": "user", "content": q}], generation_prompt=True)
            for q in questions]


def _transformers_greedy(model: Any, tokenizer: Any, prompt: str) -> list[int]:
    import torch

    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def assert_llama_cpp_decodes_like_transformers(run_dir: Path, questions: list[str], quantize: str) -> None:
    """The GGUF in llama.cpp against transformers running the weights the same file holds (`read_back`): the same
    prompt ids, then the same greedy tokens (f16), stopping at the same end-of-turn token."""
    import torch

    from tuneforge.export import export_run, llamacpp
    from tuneforge.export.gguf import read_back
    from tuneforge.registry.loaded_run import load_run

    torch.set_num_threads(1)
    out = export_run(run_dir, "gguf", quantize, measure=False).out
    run = load_run(run_dir)
    tok, model = run.tokenizer, read_back(out)
    eos = model.generation_config.eos_token_id  # what transformers' generate stops at
    stops = [*(eos if isinstance(eos, list) else [eos]), tok.eos_token_id]
    stops = [s for s in stops if s is not None]
    llm = llamacpp.load(out / "model.gguf", n_ctx=512)
    assert llm.token_eos() == tok.eos_token_id
    for prompt in _prompts(run, questions):
        ids = llamacpp.tokenize(llm, prompt)
        assert ids == tok(prompt, add_special_tokens=False).input_ids, prompt
        expected = _transformers_greedy(model, tok, prompt)
        got = llamacpp.greedy(llm, ids, NEW_TOKENS, stops)
        assert len(expected) == NEW_TOKENS or expected[-1] in stops
        if quantize == "f16":
            assert got.tokens == expected, (prompt, tok.decode(expected), tok.decode(got.tokens), got.gaps)
        else:
            _assert_same_or_near_tie(got, expected)
    llm.close()


def _assert_same_or_near_tie(got: Any, expected: list[int]) -> None:
    """q8_0: llama.cpp multiplies q8_0 weights with activations it quantises to 8 bits per block of 32
    (ggml's Q8_0 dot product), which transformers running the dequantised weights does not do. The two decode
    alike until a near-tie: where they part, transformers' token is llama.cpp's runner-up, within 0.1 logits
    (TinyStories here: 4 of 10 prompts part, at gaps of 0.005-0.043)."""
    if got.tokens == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(got.tokens, expected, strict=False)) if a != b), None)
    assert at is not None, (got.tokens, expected)  # one stopped early at a stop token the other did not pick
    assert got.runner_up[at] == expected[at] and got.gaps[at] < 0.1, (at, got.gaps[at], got.runner_up[at])


@pytest.mark.skipif(not STORIES.is_dir(), reason="../shared/models/tinystories-656k not present")
@pytest.mark.parametrize("quantize", ["f16", "q8_0"])
def test_tinystories_lora_gguf_in_llama_cpp(quantize: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = _stories_run(tmp_path_factory)
    questions = [f"Tell me a story about a {a} called {n}." for a, n in zip(ANIMALS, reversed(NAMES), strict=True)]
    assert_llama_cpp_decodes_like_transformers(run, questions, quantize)


_RUNS: dict[str, Path] = {}


def _stories_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "stories" not in _RUNS:
        _RUNS["stories"] = _train(tmp_path_factory.mktemp("stories"), STORIES, _story_rows(), max_steps=20,
                                  learning_rate=5e-3)
    return _RUNS["stories"]


def test_byte_level_bpe_lora_gguf_in_llama_cpp(tiny_causal: Path, tmp_path: Path) -> None:
    """The 'gpt2' tokenizer path (byte-level BPE, pre-tokenizer 'gpt-2', ChatML special tokens) on the tiny
    Llama the tests build (no ../shared needed)."""
    answers = ["Your refund is on its way.", "Your parcel arrives tomorrow.", "Your order is cancelled."]
    rows = [{"prompt": f"{['refund', 'track', 'cancel'][i % 3]} order {i}", "completion": answers[i % 3]}
            for i in range(30)]
    run = _train(tmp_path, tiny_causal, rows, max_steps=30, learning_rate=1e-2)
    questions = [f"{['refund', 'track', 'cancel'][i % 3]} order {100 + i}, thanks!" for i in range(10)]
    assert_llama_cpp_decodes_like_transformers(run, questions, "f16")
