"""Causal-LM exports vs their run: a real Llama-architecture model from ../shared (TinyStories-656K, or
SmolLM2-135M-Instruct from its GGUF) tuned with LoRA (story requests; GSM8K for SmolLM2), exported as merged,
int8, GGUF f16 and GGUF q8_0, and the GGUF files run by llama.cpp itself (when llama-cpp-python is installed).

    OMP_NUM_THREADS=1 python bench/export_causal.py                   # TinyStories-656K: trains the run once
    OMP_NUM_THREADS=1 python bench/export_causal.py --model smollm2   # SmolLM2-135M-Instruct (much slower)
    OMP_NUM_THREADS=1 python bench/export_causal.py --run RUN         # an existing Llama-family causal run

Columns: the run's metric (answer loss: mean NLL per answer token on the test split), its difference from the run,
greedy-token agreement with the run (share of the run's greedy tokens reproduced at the same position), p50 latency
of one forward pass at batch 1 and 32, generation speed (greedy tokens/s, batch 1), size on disk. The export rows
come from `tuneforge export`'s own measurement (the GGUF weights read back into transformers); the llama.cpp rows
run the same GGUF files in llama.cpp (its tokenizer, loader and kernels), with the run measured again beside them.
One thread everywhere. Writes bench/results/export_causal_<model>.json and this model's section of
docs/bench/export_causal.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    MODELS,
    RESULTS,
    ROOT,
    machine,
    markdown_table,
    print_table,
    require_shared,
    save,
    write_doc_section,
)

COLUMNS = ["model", "answer loss", "loss diff", "greedy agreement", "same continuations", "p50 b1 ms", "p50 b32 ms",
           "tokens/s", "size MB"]
EXPORTS = [("merged", None, "merged (transformers)"), ("int8", None, "int8 dynamic (torch)"),
           ("gguf", "f16", "GGUF f16 read back (transformers)"), ("gguf", "q8_0", "GGUF q8_0 read back (transformers)")]


# Per model: the LoRA run to export. SmolLM2 (200x TinyStories' parameters) costs ~30 s of CPU per training step
# and per batch-32 latency pass here, so its default is a handful of questions.
SETTINGS: dict[str, dict[str, Any]] = {
    "tinystories": {"train_rows": 90, "test_rows": 10, "lr": 5e-3, "batch_size": 8},
    "smollm2": {"train_rows": 40, "test_rows": 10, "lr": 1e-3, "batch_size": 4},
}


ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "bear", "duck", "fish", "lion", "mouse"]
NAMES = ["Tim", "Lily", "Sam", "Mia", "Ben", "Sue", "Max", "Anna", "Tom", "Lucy"]


def story_rows(split: str) -> list[dict[str, str]]:
    """TinyStories-656K's vocabulary has no byte tokens: llama.cpp aborts (std::out_of_range in byte_to_token) on
    any character outside it, and GSM8K's questions have some. Story requests stay inside it; the test split asks
    for animal/name pairs the training split never shows."""
    pairs = [(a, n) for i, a in enumerate(ANIMALS) for j, n in enumerate(NAMES) if (i + j) % 10 != 0]
    if split == "test":
        pairs = [(a, NAMES[(10 - i) % 10]) for i, a in enumerate(ANIMALS)]
    return [{"prompt": f"Tell me a story about a {a} called {n}.",
             "completion": f"Once upon a time, there was a little {a} named {n}. {n} liked to play in the park."}
            for a, n in pairs]


def gsm8k_rows(split: str, n: int) -> list[dict[str, str]]:
    with open(require_shared("data/gsm8k") / f"{split}.jsonl") as src:
        rows = [json.loads(line) for _, line in zip(range(n), src, strict=False)]
    return [{"prompt": r["question"], "completion": r["answer"]} for r in rows]


def train_run(model_key: str, new_tokens: int) -> Path:
    """A LoRA SFT of a real Llama-architecture model from ../shared: TinyStories on story requests, SmolLM2 (from
    its GGUF) on GSM8K questions."""
    import tuneforge
    from tuneforge.config import parse_config

    settings = SETTINGS[model_key]
    model = require_shared(MODELS[model_key][0])
    work = RESULTS / "export_causal" / model_key
    work.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rows = story_rows(split) if model_key == "tinystories" else gsm8k_rows(split, settings[f"{split}_rows"])
        (work / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # SmolLM2's runs share one workspace with the other SmolLM2 benchmarks: its GGUF is converted once for all
    out_dir = RESULTS / "smollm2" / "runs" if model_key == "smollm2" else work / "runs"
    run_dir = out_dir / f"export-causal-lora-{model_key}"
    if (run_dir / "metrics.json").is_file():
        return run_dir
    cfg = {"name": run_dir.name, "output_dir": str(out_dir), "model": {"path": str(model)},
           "data": {"train": str(work / "train.jsonl"), "test": str(work / "test.jsonl"), "max_length": 256},
           "task": {"name": "sft", "max_new_tokens": new_tokens, "eval_generations": 4},
           "method": {"name": "lora", "r": 16, "alpha": 32},
           "training": {"epochs": 1, "learning_rate": settings["lr"], "batch_size": settings["batch_size"],
                        "seed": 42, "threads": 1, "early_stopping": {"patience": None}},
           "tracking": {"mlflow": False}, "evaluation": {"baselines": []}}
    tuneforge.train(parse_config(cfg), quiet=True)
    return run_dir


def export_rows(run_dir: Path, limit: int | None) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    from tuneforge.export import export_run

    rows: list[dict[str, Any]] = []
    folders = {}
    for kind, quantize, name in EXPORTS:
        result = export_run(run_dir, kind, quantize, run_dir / "exports" / f"{kind}-{quantize or 'fp32'}",
                            threads=1, limit=limit)
        folders[f"{kind}-{quantize}"] = result.out
        (base_name, base), (_, side) = result.figures["sides"].items()
        if not rows:
            rows.append(_row(f"the run ({base_name.split('(')[1][:-1]}), in the export measurement", base))
        rows.append({**_row(name, side), "loss diff": f"{result.figures['difference']:+.4f}",
                     "greedy agreement": result.figures["agreement"]})
    return rows, folders


def _row(name: str, side: dict[str, Any]) -> dict[str, Any]:
    lat = side["latency_ms"]
    return {"model": name, "answer loss": side["metric"], "p50 b1 ms": lat["b1"][0], "p50 b32 ms": lat["b32"][0],
            "size MB": round(side["size_bytes"] / 1e6, 1)}


def _timed_greedy(generate: Any, prompts: list[Any]) -> tuple[list[list[int]], float]:
    start, out = time.perf_counter(), [generate(p) for p in prompts]
    seconds = time.perf_counter() - start
    return out, sum(map(len, out)) / seconds


def llama_rows(run_dir: Path, folders: dict[str, Path], new_tokens: int) -> list[dict[str, Any]]:
    """The run (transformers, fp32) and each GGUF in llama.cpp on the same rendered prompts."""
    import torch

    from tuneforge.export import llamacpp, load_export
    from tuneforge.export._common import folder_size
    from tuneforge.export.evaluate import _inputs, greedy_token_match, test_examples
    from tuneforge.registry.loaded_run import load_run

    run = load_run(run_dir)
    examples = test_examples(run)
    prompts = _inputs(run, examples)
    tok = run.tokenizer
    stops = _stop_ids(run.model(), tok)

    def hf_greedy(model: Any) -> Any:
        def generate(prompt: str) -> list[int]:
            enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
            with torch.inference_mode():
                ids = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            return ids[0, enc["input_ids"].shape[1]:].tolist()
        return generate

    reference, hf_speed = _timed_greedy(hf_greedy(run.model()), prompts)
    loss_hf = run.task.answer_loss(run.model(), tok, examples, run.max_length, 1)[0]
    merged_ids, merged_speed = _timed_greedy(hf_greedy(load_export(folders["merged-None"]).model), prompts)
    rows = [{"model": "the run (transformers fp32, LoRA unmerged), beside llama.cpp", "answer loss": loss_hf,
             "tokens/s": hf_speed, "greedy agreement": 1.0, "same continuations": f"{len(prompts)}/{len(prompts)}"},
            {"model": "merged (transformers fp32), beside llama.cpp", "tokens/s": merged_speed,
             "greedy agreement": greedy_token_match(reference, merged_ids),
             "same continuations": f"{sum(r == o for r, o in zip(reference, merged_ids, strict=True))}/{len(prompts)}"}]
    for key, name in (("gguf-f16", "llama.cpp, GGUF f16"), ("gguf-q8_0", "llama.cpp, GGUF q8_0")):
        llm = llamacpp.load(folders[key] / "model.gguf", n_ctx=1024, threads=1)
        mismatched = [p for p in prompts if llamacpp.tokenize(llm, p) != tok(p, add_special_tokens=False).input_ids]
        ids, speed = _timed_greedy(
            lambda p, llm=llm: llamacpp.greedy(llm, llamacpp.tokenize(llm, p), new_tokens, stops).tokens, prompts)
        same = sum(r == o for r, o in zip(reference, ids, strict=True))
        loss = llamacpp.answer_loss(llm, run, examples)[0]
        rows.append({"model": name + ("" if not mismatched else f" ({len(mismatched)} prompts tokenised otherwise)"),
                     "answer loss": loss, "loss diff": f"{loss - loss_hf:+.4f}",
                     "greedy agreement": greedy_token_match(reference, ids), "tokens/s": speed,
                     "same continuations": f"{same}/{len(prompts)}",
                     "size MB": round(folder_size(folders[key] / "model.gguf") / 1e6, 1)})
        llm.close()
    return rows


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return [*ids, tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def main() -> None:
    import torch

    from tuneforge.export import llamacpp

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="an existing causal-LM (llama family) run folder")
    parser.add_argument("--model", choices=list(SETTINGS), default="tinystories")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens per prompt (task.max_new_tokens)")
    parser.add_argument("--limit", type=int, help="score N evenly spaced test examples in the export rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    run_dir = args.run or train_run(args.model, args.new_tokens)
    trained = time.time() - start
    rows, folders = export_rows(run_dir, args.limit)
    has_llama = llamacpp.available()
    if has_llama:
        rows += llama_rows(run_dir, folders, args.new_tokens)
    print_table("Causal-LM exports vs the run", rows, COLUMNS)
    meta = {"run": str(run_dir), "machine": machine(), "train_seconds": round(trained, 1), "llama_cpp": has_llama,
            "model": MODELS[args.model][1] if not args.run else str(args.run)}
    key = args.model if not args.run else run_dir.name
    save(f"export_causal_{key}", rows, meta)
    write_doc(rows, meta, " ".join(["OMP_NUM_THREADS=1 python bench/export_causal.py", *sys.argv[1:]]), key)


def write_doc(rows: list[dict[str, Any]], meta: dict[str, Any], command: str, key: str) -> None:
    """This model's section of docs/bench/export_causal.md (other models' sections and notes are kept)."""
    llama = "" if meta["llama_cpp"] else " llama-cpp-python was not installed, so there are no llama.cpp rows."
    text = (f"## {meta['model']}, LoRA\n\n**How it was produced ({time.strftime('%Y-%m-%d')}, "
            f"{meta['machine']}):** `{command}`. Run: `{Path(meta['run']).name}`.{llama} One thread for torch and "
            "llama.cpp; other work shared the machine's 2 cores, so absolute times are upper bounds and only ratios "
            "within the table compare.\n\n" + markdown_table(rows, COLUMNS))
    doc = ROOT / "docs" / "bench" / "export_causal.md"
    write_doc_section(doc, key, text, "# Causal-LM exports vs their run")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
