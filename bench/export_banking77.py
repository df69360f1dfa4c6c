"""BANKING77 exports: torch fp32 (the run) vs torch int8 vs ONNX fp32 vs ONNX int8 on the test set.

    OMP_NUM_THREADS=1 python bench/export_banking77.py            # trains a short full fine-tune once, then exports
    python bench/export_banking77.py --run bench/results/runs/X   # export an existing BANKING77 run instead

Every export is scored by the run's own task code on the run's test split (BANKING77 test.csv, 3,080 rows):
accuracy and macro-F1, their difference from the run, argmax agreement, max |logit difference|, p50/p95 latency of
one forward pass at batch 1 and 32 (one thread, tokenisation excluded), size on disk. Writes
bench/results/export_banking77.json and docs/bench/export_banking77.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

COLUMNS = ["model", "accuracy", "macro-F1", "accuracy diff", "argmax agreement", "max abs logit diff",
           "p50 b1 ms", "p95 b1 ms", "p50 b32 ms", "p95 b32 ms", "size MB"]
EXPORTS = [("int8", None, "torch int8 (dynamic)", "torch-int8"), ("onnx", None, "ONNX fp32", "onnx-fp32"),
           ("onnx", "int8", "ONNX int8", "onnx-int8")]


def train_run(out: Path, steps: int) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    data = require_shared("data/banking77")
    run_dir = out / "banking77-export-full"
    if (run_dir / "metrics.json").is_file():
        return run_dir
    cfg = {"name": run_dir.name, "output_dir": str(out),
           "data": {"train": str(data / "train.csv"), "test": str(data / "test.csv"),
                    "columns": {"text": "text", "label": "category"}, "max_length": 64,
                    "split": {"train": 0.9, "validation": 0.1, "test": 0.0}},
           "task": {"name": "classification"}, "method": {"name": "full"},
           "training": {"epochs": 1, "max_steps": steps, "learning_rate": 2e-4, "batch_size": 32, "seed": 42,
                        "threads": 2, "early_stopping": {"patience": None}, "scheduler": "linear"},
           "tracking": {"mlflow": False}, "evaluation": {"baselines": []}}
    tuneforge.train(parse_config(cfg), quiet=True)
    return run_dir


def row(name: str, side: dict[str, Any], base: dict[str, Any] | None, figures: dict[str, Any]) -> dict[str, Any]:
    lat = side["latency_ms"]
    out = {"model": name, "accuracy": side["metrics"]["accuracy"], "macro-F1": side["metrics"]["macro_f1"],
           "p50 b1 ms": lat["b1"][0], "p95 b1 ms": lat["b1"][1], "p50 b32 ms": lat["b32"][0],
           "p95 b32 ms": lat["b32"][1], "size MB": round(side["size_bytes"] / 1e6, 1)}
    if base is not None:
        out["accuracy diff"] = f"{side['metrics']['accuracy'] - base['metrics']['accuracy']:+.4f}"
        out["argmax agreement"] = figures["agreement"]
        out["max abs logit diff"] = f"{figures['max_abs_logit_diff']:.2e}"
    return out


def main() -> None:
    import torch

    from tuneforge.export import export_run, onnx

    default_scheme = onnx.INT8_SCHEME

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="an existing BANKING77 classification run folder")
    parser.add_argument("--steps", type=int, default=300, help="training steps when no --run is given")
    parser.add_argument("--limit", type=int, help="score N evenly spaced test examples (default: all)")
    parser.add_argument("--int8-schemes", default="", help="also ONNX int8 with these onnxruntime settings "
                        "(comma-separated names from tuneforge.export.onnx.INT8_SCHEMES)")
    args = parser.parse_args()
    start = time.time()
    run_dir = args.run or train_run(RESULTS / "runs", args.steps)
    trained = time.time() - start
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    schemes = [s for s in args.int8_schemes.split(",") if s]
    extra = [("onnx", "int8", f"ONNX int8 ({s})", f"onnx-int8-{s}", s) for s in schemes]
    for kind, quantize, name, folder, *scheme in [(*e, None) for e in EXPORTS] + extra:
        onnx.INT8_SCHEME = scheme[0] or default_scheme
        if scheme[0] is None and kind == "onnx" and quantize:
            name = f"{name} ({default_scheme}, the default)"
        result = export_run(run_dir, kind, quantize, run_dir / "exports" / folder,
                            threads=1, limit=args.limit)
        (_, base), (_, side) = result.figures["sides"].items()
        if not rows:
            rows.append(row("torch fp32 (the run)", base, None, result.figures))
        rows.append(row(name, side, base, result.figures))
    print_table("BANKING77 test: exports vs the run", rows, COLUMNS)
    meta = {"run": str(run_dir), "machine": machine(), "train_seconds": round(trained, 1),
            "test_examples": result.figures["examples"]}
    save("export_banking77", rows, meta)
    doc = ROOT / "docs" / "bench" / "export_banking77.md"
    command = " ".join(["OMP_NUM_THREADS=1 python bench/export_banking77.py", *sys.argv[1:]])
    doc.write_text(f"# BANKING77 exports\n\n**How it was produced ({time.strftime('%Y-%m-%d')}, {meta['machine']}):** "
                   f"`{command}`. Run: `{run_dir.name}`, "
                   f"{meta['test_examples']} test examples. Latency: one forward pass (tokenisation excluded), one "
                   "thread, batch 1 and 32, p50/p95 over 20 and 5 timed batches; other work shared the machine's "
                   "cores, so absolute times are upper bounds and only the ratios within the table compare."
                   f"\n\n{markdown_table(rows, COLUMNS)}\n")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
