"""How accurate is `tuneforge plan`? Predicted vs measured peak memory and step time on this machine.

    cd bench && ../.venv/bin/python plan_accuracy.py              # 12 configs (about 15 minutes on 2 cores)
    cd bench && ../.venv/bin/python plan_accuracy.py --only minilm

Configs: methods full / lora / freeze x models (the bundled MiniLM on a BANKING77 subset; the TinyStories-656K causal
LM on a GSM8K subset, skipped if absent) x 2 micro-batch sizes. For each config, back to back (the CPU is shared, so
both see the same load):
  1. `plan(cfg)`: the analytic estimate (config.json + data only);
  2. `plan(cfg, dry_run=True)`: 2 + 6 real steps at two batch sizes in child processes, fitted and extrapolated;
  3. the measured run: one epoch + 1 step of real training (tuneforge's Trainer, real sampler, fresh child process)
     at the config's batch size, measured the same way (peak resident-set growth; the epoch's wall time / steps).
The +1 step is epoch 2's first batch: the epoch's longest batch again, now with optimizer states allocated, which is
the steady-state peak the plan predicts. Writes bench/results/plan_accuracy.json and docs/bench/plan_accuracy.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, SHARED, machine, markdown_table, print_table, require_shared, save

METHODS = ("full", "lora", "freeze")
# One torch thread: on this shared 2-core VM, 2 threads made steps 4-20x slower and erratic whenever the host took
# one core away (OpenMP threads waiting on a descheduled sibling). Prediction and measurement use the same setting.
THREADS = 1
MODELS: dict[str, dict[str, Any]] = {
    "minilm": {"batches": (16, 64), "rows": 1200},
    "tinystories": {"batches": (8, 32), "rows": 600},
}
COLUMNS = ["config", "steps", "mem analytic MiB", "mem dry-run MiB", "mem measured MiB", "mem err analytic %",
           "mem err dry-run %", "step analytic s", "step dry-run s", "step measured s", "time err analytic %",
           "time err dry-run %"]


def _subset_banking77(out: Path, rows: int) -> Path:
    """A seeded random subset (train.csv is sorted by label, so its head would hold a few intents only)."""
    with (require_shared("data/banking77") / "train.csv").open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    random.Random(0).shuffle(records)
    path = out / "banking77_subset.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["category"]}) + "\n" for r in records[:rows]))
    return path


def _subset_gsm8k(out: Path, rows: int) -> Path:
    lines = (require_shared("data/gsm8k") / "train.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    path = out / "gsm8k_subset.jsonl"
    path.write_text("".join(json.dumps({"prompt": json.loads(x)["question"], "completion": json.loads(x)["answer"]})
                            + "\n" for x in lines))
    return path


def config(model: str, method: str, batch: int, data: Path, out: Path) -> dict[str, Any]:
    common = {"name": f"plan-{model}-{method}-{batch}", "output_dir": str(out),
              "training": {"batch_size": batch, "epochs": 1, "learning_rate": 1e-4, "seed": 42, "threads": THREADS},
              "tracking": {"mlflow": False}, "evaluation": {"baselines": []}, "method": {"name": method}}
    if model == "minilm":
        return {**common, "model": {"path": "default"}, "task": {"name": "classification"},
                "data": {"train": str(data), "max_length": 64, "split": {"train": 0.8, "validation": 0.1, "test": 0.1}}}
    return {**common, "model": {"path": str(SHARED / "models" / "tinystories-656k")},
            "task": {"name": "sft", "packing": False, "forgetting": {"enabled": False}},
            "data": {"train": str(data), "max_length": 256, "split": {"train": 0.8, "validation": 0.1, "test": 0.1}}}


def _err(pred: float, meas: float) -> float:
    return 100 * abs(pred - meas) / meas


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """Fixed decimals per column kind (the raw numbers stay in the JSON)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float):
            value = f"{value:.3f}" if key.endswith(" s") else f"{value:.1f}"
        out[key] = value
    return out


def run_one(raw: dict[str, Any]) -> dict[str, Any]:
    from tuneforge.config import parse_config, with_absolute_paths
    from tuneforge.estimate import plan
    from tuneforge.estimate.dryrun import measure

    cfg = with_absolute_paths(parse_config(raw))
    analytic = plan(cfg, strict=False)
    dry = plan(cfg, dry_run=True, strict=False)
    assert dry.dry_run is not None
    epoch_steps = analytic.time.micro_batches_per_epoch
    start = time.perf_counter()
    run = measure(cfg, dry.data.train_dataset, dry.data.labels, cfg.training.batch_size, epoch_steps, warmup=1,
                  mode="run")
    measured_step = run.step_ends[epoch_steps - 1] / epoch_steps  # the first epoch's wall time per step
    mib = 2**20
    return {
        "config": raw["name"].removeprefix("plan-"), "steps": epoch_steps,
        "mem analytic MiB": analytic.memory.total / mib, "mem dry-run MiB": dry.peak_bytes / mib,
        "mem measured MiB": run.peak_bytes / mib,
        "mem err analytic %": _err(analytic.memory.total, run.peak_bytes),
        "mem err dry-run %": _err(dry.peak_bytes, run.peak_bytes),
        "step analytic s": analytic.time.seconds_per_step, "step dry-run s": dry.dry_run.time.seconds_per_step,
        "step measured s": measured_step,
        "time err analytic %": _err(analytic.time.seconds_per_step, measured_step),
        "time err dry-run %": _err(dry.dry_run.time.seconds_per_step, measured_step),
        "dry-run fit": {"memory_intercept_mib": dry.dry_run.memory.intercept / mib,
                        "memory_per_sample_mib": dry.dry_run.memory.per_sample / mib,
                        "step_intercept_s": dry.dry_run.steps.intercept,
                        "step_per_token_ms": 1000 * dry.dry_run.steps.per_token,
                        "measured_batches": [m.batch for m in dry.dry_run.measurements]},
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated model names (minilm, tinystories)")
    args = parser.parse_args()
    import tuneforge  # noqa: F401 - offline defaults before transformers loads
    from tuneforge.estimate.hardware import local_cpu

    work = RESULTS / "plan_accuracy"
    work.mkdir(parents=True, exist_ok=True)
    models = [m for m in MODELS if not args.only or m in args.only.split(",")]
    if "tinystories" in models and not (SHARED / "models" / "tinystories-656k").is_dir():
        print(f"skipping TinyStories: {SHARED / 'models' / 'tinystories-656k'} not found")
        models.remove("tinystories")
    rows: list[dict[str, Any]] = []
    started = time.time()
    for model in models:
        spec = MODELS[model]
        data = (_subset_banking77 if model == "minilm" else _subset_gsm8k)(work, spec["rows"])
        for method in METHODS:
            for batch in spec["batches"]:
                rows.append(run_one(config(model, method, batch, data, work)))
                print_table("plan accuracy (so far)", [_shown(r) for r in rows], COLUMNS)
    medians = {c: statistics.median(r[c] for r in rows) for c in COLUMNS[2:]}
    rows_out = [*rows, {"config": "median", **medians}]
    shown = [_shown(r) for r in rows_out]
    print_table("tuneforge plan: predicted vs measured (this machine)", shown, COLUMNS)
    cpu = local_cpu(THREADS)
    meta = {"command": "cd bench && ../.venv/bin/python plan_accuracy.py",
            "machine": f"{machine()} in this process; {THREADS} torch thread per measured run",
            "cpu": cpu.description, "minutes": round((time.time() - started) / 60, 1)}
    save("plan_accuracy", rows_out, meta)
    md = ROOT / "docs" / "bench" / "plan_accuracy.md"
    table = markdown_table(shown, COLUMNS)
    text = md.read_text() if md.is_file() else ""
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    block = (f"{start}\nCommand: `{meta['command']}` ({time.strftime('%Y-%m-%d')}, {meta['machine']}; "
             f"{cpu.description}; {meta['minutes']} min).\n\n{table}\n{end}")
    if start in text and end in text:  # keep the hand-written reading around the generated table
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = f"# `tuneforge plan` accuracy\n\n{block}\n"
    md.write_text(text)
    print(f"wrote {md} and {RESULTS / 'plan_accuracy.json'}")


if __name__ == "__main__":
    main()
