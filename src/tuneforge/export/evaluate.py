"""Every export measured against its run on the run's test split: the task metric of both and its difference,
agreement (argmax for classifiers, tags for NER, greedy tokens for LMs), latency at batch 1 and 32, size on disk.

Both sides are scored by the run's own task code (`task.evaluate`), so the metric is computed the same way as in
the run's report; the ONNX graph and the GGUF weights are wrapped or rebuilt to look like a torch model for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LATENCY_BATCHES = (1, 32)


@dataclass
class Side:
    """One column of the comparison: a model (torch, or anything called like one) and its size on disk."""

    name: str
    model: Any
    size_bytes: int


def test_examples(run: Any, limit: int | None = None) -> list[dict[str, Any]]:
    path = run.path / "data" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    if limit and len(rows) > limit:  # evenly spaced, not the first N: test files are often sorted by label
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit)]
    return rows


def _inputs(run: Any, examples: list[dict[str, Any]]) -> list[Any]:
    """What one forward pass reads per example: text, word list (NER) or the rendered prompt (LMs)."""
    if run.task.name == "token_classification":
        return [e["tokens"] for e in examples]
    if run.generative:
        from tuneforge.tasks.chat_templates import render

        template = run.chat_template()[1]
        return [render(run.tokenizer, template, _prompt(e), generation_prompt=True) for e in examples]
    return [e["text"] for e in examples]


def _prompt(example: dict[str, Any]) -> list[dict[str, str]]:
    messages = example["messages"]
    return messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages


def _encode(run: Any, batch: list[Any]) -> Any:
    words = bool(batch) and isinstance(batch[0], list)
    return run.tokenizer(batch, is_split_into_words=words, truncation=True, max_length=run.max_length,
                         padding=True, return_tensors="pt", add_special_tokens=not run.generative)


def latency_ms(run: Any, model: Any, inputs: list[Any], batch: int, repeats: int) -> tuple[float, float]:
    """p50 and p95 of one forward pass over `batch` inputs (tokenisation excluded), after one warm-up pass."""
    import torch

    if not inputs:
        return float("nan"), float("nan")
    batches = [[inputs[(start + j) % len(inputs)] for j in range(batch)]
               for start in range(0, repeats * batch, batch)]
    encoded = [_encode(run, b) for b in batches]
    times = []
    with torch.inference_mode():
        model(**encoded[0])
        for enc in encoded:
            start = time.perf_counter()
            model(**enc)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _logits(run: Any, model: Any, inputs: list[Any]) -> np.ndarray:
    return run.task.logits(model, run.tokenizer, inputs, None, run.max_length, 32)


def _greedy_ids(run: Any, model: Any, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    import torch

    out = []
    with torch.inference_mode():
        for prompt in prompts:
            enc = run.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=run.tokenizer.pad_token_id)
            out.append(ids[0, enc["input_ids"].shape[1]:].tolist())
    return out


def greedy_token_match(reference: list[list[int]], other: list[list[int]]) -> float:
    """Share of the reference's greedy tokens the export reproduces at the same position."""
    total = sum(len(r) for r in reference)
    same = sum(sum(a == b for a, b in zip(r, o, strict=False)) for r, o in zip(reference, other, strict=True))
    return same / total if total else 1.0


def agreement(run: Any, base: Side, export: Side, examples: list[dict[str, Any]], inputs: list[Any],
              results: tuple[Any, Any], generations: int) -> dict[str, Any]:
    """How often the export decides as the run does (and, for classifiers, how far its logits are)."""
    if run.task.name == "classification" and not getattr(run.task.params, "multi_label", False):
        a, b = _logits(run, base.model, inputs), _logits(run, export.model, inputs)
        return {"agreement": float((a.argmax(-1) == b.argmax(-1)).mean()) if len(a) else 1.0,
                "agreement_kind": "argmax", "max_abs_logit_diff": float(np.abs(a - b).max()) if len(a) else 0.0}
    if run.generative:
        prompts = inputs[:generations]
        new = int(getattr(run.task.params, "max_new_tokens", 32))
        match = greedy_token_match(_greedy_ids(run, base.model, prompts, new),
                                   _greedy_ids(run, export.model, prompts, new))
        return {"agreement": match, "agreement_kind": f"greedy tokens ({len(prompts)} prompts)"}
    flat_a = [t for seq in results[0].predictions for t in (seq if isinstance(seq, list) else [seq])]
    flat_b = [t for seq in results[1].predictions for t in (seq if isinstance(seq, list) else [seq])]
    same = sum(x == y for x, y in zip(flat_a, flat_b, strict=True))
    return {"agreement": same / len(flat_a) if flat_a else 1.0, "agreement_kind": "per-word tags"}


def compare(run: Any, base: Side, export: Side, *, limit: int | None = None, repeats: int = 20,
            generations: int = 8) -> dict[str, Any]:
    """The figures of the export's report table (see `table_markdown`)."""
    examples = test_examples(run, limit)
    task, metric = run.task, run.task.primary_metric
    results = tuple(task.evaluate(side.model, run.tokenizer, examples, run.labels, run.max_length, 32)
                    for side in (base, export)) if examples else ()
    inputs = _inputs(run, examples)
    sides = {}
    for side, result in zip((base, export), results or (None, None), strict=True):
        lat = {f"b{b}": latency_ms(run, side.model, inputs, b, repeats if b == 1 else max(repeats // 4, 3))
               for b in LATENCY_BATCHES}
        sides[side.name] = {"metric": result.metrics.get(metric) if result else None, "latency_ms": lat,
                            "size_bytes": side.size_bytes, "metrics": dict(result.metrics) if result else {}}
    values = [s["metric"] for s in sides.values()]
    diff = values[1] - values[0] if None not in values else None
    agree = agreement(run, base, export, examples, inputs, results, generations) if examples else {}
    return {"metric": metric, "examples": len(examples), "sides": sides, "difference": diff, **agree}


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def table_markdown(figures: dict[str, Any]) -> str:
    metric = figures["metric"]
    head = (f"| model | {metric} | difference | agreement | max abs logit diff | p50 b1 ms | p95 b1 ms | "
            "p50 b32 ms | p95 b32 ms | size |")
    lines = [head, "|" + "---|" * 10]
    for i, (name, side) in enumerate(figures["sides"].items()):
        value = "n/a" if side["metric"] is None else f"{side['metric']:.4f}"
        diff = "" if i == 0 or figures["difference"] is None else f"{figures['difference']:+.4f}"
        agree = "" if i == 0 or "agreement" not in figures else f"{figures['agreement']:.2%}"
        logit = "" if i == 0 or "max_abs_logit_diff" not in figures else f"{figures['max_abs_logit_diff']:.2e}"
        lat = [f"{x:.2f}" for b in LATENCY_BATCHES for x in side["latency_ms"][f"b{b}"]]
        lines.append(f"| {name} | {value} | {diff} | {agree} | {logit} | {' | '.join(lat)} | "
                     f"{_mb(side['size_bytes'])} |")
    return "\n".join(lines)


def write_report(out: Path, run: Any, info: dict[str, Any], figures: dict[str, Any]) -> Path:
    from tuneforge.evaluation.html import write_html_report
    from tuneforge.registry.files import write_text

    kind = info["kind"] + (f" ({info['quantize']})" if info.get("quantize") else "")
    notes = "".join(f"- {n}\n" for n in info.get("notes", []))
    md = (f"# Export of {run.name}: {kind}\n\n"
          f"Run: `{run.path}` ({run.task.name}, method {run.method.name}). Export: `{out}`.\n\n"
          f"## Export vs run\n\nMeasured on the run's test split ({figures['examples']} examples). Agreement: "
          f"{figures.get('agreement_kind', 'n/a')}. Latency: one forward pass, tokenisation excluded, CPU.\n\n"
          f"{table_markdown(figures)}\n\n" + (f"## Notes\n\n{notes}\n" if notes else "")
          + "## Files\n\n" + "".join(f"- `{f}`\n" for f in info.get("files", [])))
    path = write_text(out / "report.md", md)
    write_html_report(path)
    return path
