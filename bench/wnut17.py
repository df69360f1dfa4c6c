"""WNUT-17 (emerging entities NER) with the default MiniLM: full fine-tuning and LoRA, entity-level F1 on the test
file, next to a linear probe on frozen features measured in the same run.

    python bench/wnut17.py                 # about 15 minutes on 2 cores
    python bench/wnut17.py --methods lora

Writes bench/results/wnut17.json and docs/bench/wnut17.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

METHODS: dict[str, dict[str, Any]] = {
    "full": {"epochs": 3, "learning_rate": 1e-4},
    "lora": {"epochs": 3, "learning_rate": 1e-3, "method": {"r": 16, "alpha": 32}},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    data = require_shared("data/wnut17")

    import tuneforge
    from tuneforge.config import parse_config

    out = RESULTS / "runs"
    rows: list[dict[str, Any]] = []
    for i, method in enumerate(args.methods.split(",")):
        settings = METHODS[method]
        shutil.rmtree(out / f"wnut17-{method}", ignore_errors=True)
        cfg = parse_config({
            "name": f"wnut17-{method}", "output_dir": str(out),
            "data": {"train": str(data / "wnut17train.conll"), "validation": str(data / "emerging.dev.conll"),
                     "test": str(data / "emerging.test.annotated"), "format": "conll", "max_length": 128},
            "task": {"name": "token_classification"},
            "method": {"name": method, **settings.get("method", {})},
            "training": {"epochs": settings["epochs"], "learning_rate": settings["learning_rate"],
                         "batch_size": 16, "seed": 42, "early_stopping": {"metric": "f1", "patience": None}},
            "tracking": {"mlflow": False},
            "evaluation": {"baselines": ["linear_probe"] if i == 0 else []},
        })
        result = tuneforge.train(cfg, quiet=True)
        info = result.train_info
        if "linear_probe" in result.baselines:
            probe = result.baselines["linear_probe"]
            rows.append({"model": "linear probe (frozen MiniLM features)", "trainable %": 0.0,
                         "entity F1": probe["f1"], "precision": probe["precision"], "recall": probe["recall"]})
        rows.append({"model": f"fine-tuned ({method})", "trainable params": info["trainable_params"],
                     "trainable %": 100 * info["trainable_params"] / info["total_params"],
                     "epochs": settings["epochs"], "train s": info["train_seconds"],
                     "entity F1": result.test_metrics["f1"], "precision": result.test_metrics["precision"],
                     "recall": result.test_metrics["recall"]})
        print_table("WNUT-17 (so far)", rows, list(rows[-1]))
    columns = ["model", "trainable params", "trainable %", "epochs", "train s", "entity F1", "precision", "recall"]
    print_table("WNUT-17 test (1,287 sentences), entity-level micro F1", rows, columns)
    meta = {"machine": machine(), "command": "python bench/wnut17.py --methods " + args.methods, "settings": METHODS}
    save("wnut17", rows, meta)
    md = ROOT / "docs" / "bench" / "wnut17.md"
    md.write_text(f"# WNUT-17 benchmark\n\nCommand: `{meta['command']}` ({time.strftime('%Y-%m-%d')}, "
                  f"{meta['machine']}).\n\n" + markdown_table(rows, columns) + "\n")
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
