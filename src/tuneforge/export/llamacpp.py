"""A GGUF export run by llama.cpp itself (llama-cpp-python), to check that llama.cpp reproduces the run.

`read_back` (gguf.py) scores the weights the file holds inside transformers; this module runs llama.cpp's own
loader, tokenizer and kernels on the file. Greedy decoding is done here, one token at a time from llama.cpp's
logits (argmax), rather than through llama-cpp-python's sampler chain: the comparison with transformers' greedy
`generate` is then argmax against argmax, and the logit gap at a divergence can be read from the same scores.

Optional: `pip install 'tuneforge[llamacpp]'` (builds llama.cpp from source).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.export._common import ExportError


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def load(gguf_file: str | Path, n_ctx: int = 512, threads: int = 1) -> Any:
    """llama.cpp's model and context for gguf_file, on CPU, keeping the logits of every evaluated position."""
    if not available():
        raise ExportError("checking a GGUF in llama.cpp needs llama-cpp-python",
                          fix="pip install 'tuneforge[llamacpp]' (builds llama.cpp from source)")
    from llama_cpp import Llama

    os.environ.setdefault("GGML_LOG_LEVEL", "error")
    return Llama(str(gguf_file), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, logits_all=True,
                 n_gpu_layers=0, seed=0, verbose=False)


def tokenize(llm: Any, text: str) -> list[int]:
    """llama.cpp's tokens for an already rendered prompt: special tokens parsed (the chat template writes them as
    text), no BOS added (the template writes the BOS when the model wants one), as transformers'
    `tokenizer(text, add_special_tokens=False)` does for tuneforge's generation."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


@dataclass
class Greedy:
    tokens: list[int]
    gaps: list[float]  # per generated token: its logit minus the runner-up's (small = a near-tie)
    runner_up: list[int]  # per generated token: the second-best token


def greedy(llm: Any, prompt_ids: list[int], max_new_tokens: int, stop_ids: Iterable[int]) -> Greedy:
    """Greedy decoding from prompt_ids: argmax of llama.cpp's logits, stopping after a stop token (included, as
    transformers' generate includes its EOS) or after max_new_tokens."""
    import numpy as np

    stops = set(stop_ids)
    llm.reset()
    llm.eval(prompt_ids)
    tokens, gaps, runner_up = [], [], []
    for _ in range(max_new_tokens):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        first, second = sorted(np.argpartition(-logits, 1)[:2], key=lambda i: (-logits[i], i))
        best = int(first)  # ties go to the lower id, as torch's argmax does
        tokens.append(best)
        gaps.append(float(logits[first] - logits[second]))
        runner_up.append(int(second))
        if best in stops:
            break
        llm.eval([best])
    return Greedy(tokens, gaps, runner_up)


def answer_loss(llm: Any, run: Any, examples: list[dict[str, Any]]) -> tuple[float, int]:
    """The run's SFT metric (mean negative log-likelihood per answer token, `SFT.answer_loss`) computed from
    llama.cpp's logits: the same token ids and answer mask as the task builds, one example per pass."""
    import numpy as np
    import torch

    total, count = 0.0, 0
    probe = torch.nn.Linear(1, 1)  # answer_batches reads a device and calls .eval(): llama.cpp has neither
    for inputs, labels in run.task.answer_batches(probe, run.tokenizer, examples, run.max_length, 1):
        ids, targets = inputs["input_ids"][0].tolist(), labels[0, 1:].numpy()
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
        keep = targets != -100
        logits, targets = logits[keep], targets[keep]
        top = logits.max(-1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
        total += float((log_norm - logits[np.arange(len(targets)), targets]).sum())
        count += int(keep.sum())
    return total / max(count, 1), count
