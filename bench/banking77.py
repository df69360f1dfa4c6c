"""BANKING77 with the default MiniLM: every method, plus a plain transformers-Trainer script, in one run.

    python bench/banking77.py                      # all rows (about 60 minutes on 2 cores)
    python bench/banking77.py --methods full,lora  # a subset

train.csv is split 90/10 (stratified, seed 42) into train/validation after tuneforge's cleaning; test.csv is the
test set. Prints a table and writes bench/results/banking77.json and docs/bench/banking77.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

# Per-method settings, never tuned on test. full/lora/freeze: set from validation curves; the other PEFT rows got
# short schedules to keep the whole table near the hour on 2 cores (their scores are not yet at their best).
METHODS: dict[str, dict[str, Any]] = {
    "full": {"epochs": 4, "learning_rate": 2e-4},
    "freeze": {"epochs": 10, "learning_rate": 1e-2},
    "lora": {"epochs": 6, "learning_rate": 1e-3, "method": {"r": 8, "alpha": 16}},
    "dora": {"epochs": 3, "learning_rate": 1e-3, "method": {"r": 8, "alpha": 16}},
    "ia3": {"epochs": 3, "learning_rate": 5e-3},
    "prompt_tuning": {"epochs": 2, "learning_rate": 1e-2},
    "adapter": {"epochs": 3, "learning_rate": 1e-3},
}

def config(method: str, data_dir: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"banking77-{method}", "output_dir": str(out),
        "data": {"train": str(data_dir / "train.csv"), "test": str(data_dir / "test.csv"),
                 "columns": {"text": "text", "label": "category"}, "max_length": 64,
                 "split": {"train": 0.9, "validation": 0.1, "test": 0.0}},
        "task": {"name": "classification"},
        "method": {"name": method, **settings.get("method", {})},
        "training": {"epochs": settings["epochs"], "learning_rate": settings["learning_rate"], "batch_size": 32,
                     "seed": 42, "early_stopping": {"patience": None}, "scheduler": "linear"},
        "tracking": {"mlflow": False},
        "evaluation": {"baselines": []},
    }


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the validation accuracy first reached target (None: never)."""
    return next((t for t, acc in curve if acc >= target - 1e-9), None)


def tuneforge_curve(run_dir: Path, train_seconds: float) -> list[tuple[float, float]]:
    """(seconds, val accuracy) per evaluation; seconds pro rata by step (steps take near-constant time)."""
    import json

    history = json.loads((run_dir / "history.json").read_text())
    evals = [h for h in history if "eval_accuracy" in h]
    last = max(h["step"] for h in history)
    return [(train_seconds * h["step"] / last, h["eval_accuracy"]) for h in evals]


def _same_config(run_dir: Path, cfg: Any) -> bool:
    from tuneforge.config import load_config, with_absolute_paths

    saved = with_absolute_paths(load_config(run_dir / "config.yaml")).model_dump(mode="json")
    return saved == with_absolute_paths(cfg).model_dump(mode="json")


def _same_finished_run(run_dir: Path, cfg: Any) -> bool:
    """A finished run of exactly this config (resolved the same way tuneforge saves it)."""
    return (run_dir / "metrics.json").is_file() and _same_config(run_dir, cfg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-plain", action="store_true", help="skip the plain Trainer baseline")
    parser.add_argument("--reuse", action="store_true",
                        help="read back rows whose finished run folder has the same config (no retraining)")
    args = parser.parse_args()
    data_dir = require_shared("data/banking77")

    import tuneforge
    from tuneforge.config import parse_config

    out = RESULTS / "runs"
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[float, float]]] = {}
    for method in args.methods.split(","):
        cfg = parse_config(config(method, data_dir, out, METHODS[method]))
        run_dir = out / f"banking77-{method}"
        began = time.perf_counter()
        reused = args.reuse and _same_finished_run(run_dir, cfg)
        if not reused:
            # An interrupted run of the same config continues from its last checkpoint (tuneforge's --resume).
            resume = args.reuse and (run_dir / "config.yaml").is_file() and _same_config(run_dir, cfg)
            if not resume:
                shutil.rmtree(run_dir, ignore_errors=True)
            tuneforge.train(cfg, quiet=True, resume=resume)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        info, test = metrics["train"], metrics["test"]
        curves[method] = tuneforge_curve(run_dir, info["train_seconds"])
        rows.append({"method": method, "trainable params": info["trainable_params"],
                     "trainable %": 100 * info["trainable_params"] / info["total_params"],
                     "epochs": METHODS[method]["epochs"], "train s": info["train_seconds"],
                     "test accuracy": test["accuracy"], "macro-F1": test["macro_f1"],
                     "total s": "(reused)" if reused else time.perf_counter() - began})
        print_table("BANKING77 (so far)", rows, list(rows[0]))
    if not args.no_plain:
        from plain_trainer_banking77 import run as plain_run
        from tuneforge.models.loading import default_model_path

        splits = out / "banking77-full" / "data"
        epochs = METHODS["full"]["epochs"]
        cache = RESULTS / "plain_trainer_banking77.json"
        key = {"epochs": epochs, "splits": json.loads((splits / "report.json").read_text())["fingerprints"]}
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if args.reuse and cached.get("key") == key:
            plain = cached["result"]
            plain["val_curve"] = plain["val_curve"][:int(epochs)]  # one validation point per epoch
        else:
            plain = plain_run(splits, epochs, RESULTS / "plain-trainer", str(default_model_path()))
            cache.write_text(json.dumps({"key": key, "result": plain}))
        curves["plain Trainer"] = plain["val_curve"]
        rows.append({"method": "plain Trainer script", "trainable params": plain["trainable"],
                     "trainable %": 100.0, "epochs": epochs, "train s": plain["train_seconds"],
                     "test accuracy": plain["test_accuracy"], "macro-F1": plain["test_macro_f1"]})
        target = plain["val_curve"][-1][1]
        full = next((r for r in rows if r["method"] == "full"), None)
        if full is not None:
            t_plain = time_to(plain["val_curve"], target)
            t_full = time_to(curves["full"], target)
            full["time to plain's val acc"] = f"{t_full:.0f} s ({t_full / t_plain:.2f}x)" if t_full and t_plain \
                else "not reached"
            rows[-1]["time to plain's val acc"] = f"{t_plain:.0f} s (1.00x)"
    columns = ["method", "trainable params", "trainable %", "epochs", "train s", "test accuracy", "macro-F1",
               "time to plain's val acc"]
    print_table("BANKING77, all-MiniLM-L6-v2, test.csv (3,080 examples)", rows, columns)
    meta = {"machine": machine(), "command": "python bench/banking77.py --methods " + args.methods,
            "curves": curves, "settings": METHODS}
    save("banking77", rows, meta)
    md = ROOT / "docs" / "bench" / "banking77.md"
    md.write_text(f"# BANKING77 benchmark\n\nCommand: `{meta['command']}` ({time.strftime('%Y-%m-%d')}, "
                  f"{meta['machine']}).\n\n" + markdown_table(rows, columns) + "\n")
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
