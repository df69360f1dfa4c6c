"""BANKING77: fine-tuning vs prompting vs retrieval with the default MiniLM, on the 3,080-example test set.

    cd bench && ../.venv/bin/python compare_banking77.py     # reuses (or trains) bench/banking77.py's runs, compares

Rows: zero-shot (similarity to label descriptions), label similarity + vote of 4 similar training examples (an
encoder's few-shot),
kNN retrieval (FAISS, 10 neighbours), linear probe, full fine-tuning, LoRA, and each run + kNN retrieval, each with a
95% bootstrap CI, a paired permutation test against the best baseline, and costs. Finished runs with the same config
are reused. Writes bench/results/compare_banking77.json and the comparison's report.html/report.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, machine, markdown_table, print_table, require_shared, save

sys.path.insert(0, str(Path(__file__).parent))
from banking77 import METHODS, _same_finished_run, config  # the BANKING77 bench's runs and data

RUNS = ("full", "lora")


def main() -> None:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.evaluation.compare import compare

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default=",".join(RUNS))
    args = parser.parse_args()
    data_dir = require_shared("data/banking77")
    out = RESULTS / "runs"  # shared with bench/banking77.py: its finished runs are reused, not retrained
    run_dirs = []
    for method in args.runs.split(","):
        raw = config(method, data_dir, out, METHODS[method])
        cfg = parse_config(raw)
        run_dir = out / raw["name"]
        if not _same_finished_run(run_dir, cfg):
            tuneforge.train(cfg, resume=(run_dir / "config.yaml").is_file(), quiet=True)
        run_dirs.append(str(run_dir))
    base = config("full", data_dir, out, METHODS["full"])
    base.update(name="compare-banking77", compare={"few_shot_k": 4, "rag_k": 10, "latency_examples": 100})
    start = time.perf_counter()
    result = compare(parse_config(base), runs=run_dirs)
    seconds = time.perf_counter() - start
    metric = result.metric
    rows = [{"system": r["system"], metric: r[metric], "95% CI": f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
             "accuracy": r["accuracy"], "vs best baseline": _delta(r), "train s": r["train_seconds"] or 0.0,
             "p50 ms": r["latency_p50_ms"], "p95 ms": r["latency_p95_ms"], "peak MB": r["peak_memory_mb"],
             "trainable": r["trainable_params"], "artefact MB": r["artifact_bytes"] / 2**20} for r in result.rows]
    columns = list(rows[0])
    print_table("BANKING77 test (3,080): fine-tuning vs prompting vs retrieval", rows, columns)
    print(f"recommendation: {result.recommendation}")
    print(f"compare took {seconds:.0f} s; report: {result.out_dir / 'report.html'}")
    save("compare_banking77", result.rows, {"machine": machine(), "recommendation": result.recommendation,
                                            "compare_seconds": seconds, "table": markdown_table(rows, columns)})


def _delta(row: dict[str, Any]) -> str:
    if row.get("best_baseline"):
        return "best baseline"
    return f"{100 * row['delta']:+.2f} pts (p={row['p_value']:.3g})"


if __name__ == "__main__":
    main()
