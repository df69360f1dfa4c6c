"""A small study behind the classification / token-classification starter defaults (docs/defaults.md).

    OMP_NUM_THREADS=1 python bench/defaults_study.py                       # every dataset x setting
    OMP_NUM_THREADS=1 python bench/defaults_study.py --datasets banking77 --settings old,r16-lr1e-3
    python bench/defaults_study.py --table                                  # print the table of finished rows

Datasets are subsampled so the whole study fits a shared 2-core machine (one torch thread per run):
- banking77: the 1,000 training rows of bench/defaults_vs_trainer.py (a seeded sample of train.csv; 77 intents, ~13
  rows each), validation split from them by tuneforge (1/9), all 3,080 rows of test.csv as test.
- demo: the shipped examples/data/support_intents.jsonl, split 80/10/10 by tuneforge (as the README's demo does).
- wnut17: 1,000 sentences of wnut17train.conll, 300 of emerging.dev.conll, 500 of emerging.test.annotated.

Every row is one `tuneforge.train` run of the starter config with only the listed keys changed. Each finished row is
cached in bench/results/defaults_study/<dataset>-<setting>.json, so rows can run in separate processes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, markdown_table, print_table, require_shared

OUT = RESULTS / "defaults_study"

# Settings: the starter with these keys set (old = the classification starter before this study). Each setting pins
# every studied key, so a row means the same thing whatever the shipped starter says today. Early stopping watches the
# task's primary metric (accuracy / entity F1) on validation with patience 3, as the starter does.
def _cls(r: int, lr: float, epochs: int, refit: bool = False) -> dict[str, Any]:
    return {"method": {"name": "lora", "r": r, "alpha": 2 * r},
            "training": {"epochs": epochs, "learning_rate": lr, "refit": refit,
                         "early_stopping": {"metric": "auto", "patience": 3}}}


CLASSIFICATION: dict[str, dict[str, Any]] = {
    "old": _cls(8, 5e-4, 3),
    "r8-lr1e-3": _cls(8, 1e-3, 20),
    "r16-lr5e-4": _cls(16, 5e-4, 20),
    "r16-lr1e-3": _cls(16, 1e-3, 20),
    "r16-lr2e-3": _cls(16, 2e-3, 20),
    "r16-lr1e-3-refit": _cls(16, 1e-3, 20, refit=True),
}


# The NER starter fine-tunes fully (LoRA stays at the all-O solution on WNUT-17, docs/bench/wnut17.md).
def _tok(lr: float, epochs: int) -> dict[str, Any]:
    return {"method": {"name": "full"}, "training": {"epochs": epochs, "learning_rate": lr, "refit": False,
                                                     "early_stopping": {"metric": "f1", "patience": 3}}}


TOKEN: dict[str, dict[str, Any]] = {
    "old": _tok(5e-5, 3),
    "full-lr5e-5-20ep": _tok(5e-5, 20),
    "full-lr1e-4-20ep": _tok(1e-4, 20),
}
SETTINGS = {"banking77": CLASSIFICATION, "demo": CLASSIFICATION, "wnut17": TOKEN}


def _subsample_lines(lines: list[str], n: int, seed: int) -> list[str]:
    picked = list(lines)
    random.Random(seed).shuffle(picked)
    return picked[:n]


def banking77_files(out: Path) -> dict[str, str]:
    """The training rows and test file of bench/defaults_vs_trainer.py (same sample, same order)."""
    from defaults_vs_trainer import data_files, test_jsonl_file

    train, test_csv = data_files()
    return {"train": str(train), "test": str(test_jsonl_file(test_csv))}


def wnut17_files(out: Path) -> dict[str, str]:
    src = require_shared("data/wnut17")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, name, n in (("train", "wnut17train.conll", 1000), ("validation", "emerging.dev.conll", 300),
                           ("test", "emerging.test.annotated", 500)):
        sentences = [s for s in (src / name).read_text(encoding="utf-8").split("\n\n") if s.strip()]
        path = out / f"wnut17-{split}.conll"
        path.write_text("\n\n".join(s.strip("\n") for s in _subsample_lines(sentences, n, 0)) + "\n",
                        encoding="utf-8")
        files[split] = str(path)
    return files


def starter(task: str) -> dict[str, Any]:
    import yaml

    from tuneforge.cli.config_cmd import STARTERS_DIR

    return yaml.safe_load((STARTERS_DIR / f"{task}.yaml").read_text(encoding="utf-8"))


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


def build_config(dataset: str, setting: str) -> dict[str, Any]:
    """The starter for the dataset's task, its data pointed at the subsample, then the setting's overrides."""
    data_dir = OUT / "data"
    if dataset == "banking77":
        raw, data = starter("classification"), banking77_files(data_dir)
    elif dataset == "demo":
        raw, data = starter("classification"), {"train": str(ROOT / "examples/data/support_intents.jsonl")}
    else:
        files = wnut17_files(data_dir)
        raw, data = starter("token_classification"), {**files, "format": "conll"}
    raw["data"] = {**{k: v for k, v in raw["data"].items() if k not in ("train", "validation", "test")}, **data}
    raw = merge(raw, SETTINGS[dataset][setting])
    name = f"{dataset}-{setting}"
    raw.update(name=name, output_dir=str(OUT / "runs"))
    return merge(raw, {"training": {"threads": 1, "seed": 42}, "tracking": {"mlflow": False},
                       "evaluation": {"baselines": []}})


def run_row(dataset: str, setting: str) -> dict[str, Any]:
    import tuneforge
    from tuneforge.config import parse_config

    cfg = parse_config(build_config(dataset, setting))
    shutil.rmtree(cfg.run_dir, ignore_errors=True)
    began = time.perf_counter()
    result = tuneforge.train(cfg, quiet=True)
    info = result.train_info
    primary = "f1" if dataset == "wnut17" else "accuracy"
    history = json.loads((cfg.run_dir / "history.json").read_text())
    evals = [h for h in history if f"eval_{primary}" in h]
    row = {"dataset": dataset, "setting": setting, "r": getattr(cfg.method, "r", "-"),
           "lr": cfg.learning_rate(), "max epochs": cfg.training.epochs,
           "epochs run": round(float(info["epochs"]), 1), "best epoch": _best_epoch(evals, primary),
           "refit steps": (info.get("refit") or {}).get("steps", "-"),
           "best val": info["best_metric"], f"test {primary}": result.test_metrics[primary],
           "test": result.test_metrics[primary], "train s": info["train_seconds"],
           "wall s": round(time.perf_counter() - began, 1)}
    (OUT / f"{dataset}-{setting}.json").write_text(json.dumps(row, indent=2))
    shutil.rmtree(cfg.run_dir / "checkpoints", ignore_errors=True)
    return row


def _best_epoch(evals: list[dict[str, Any]], primary: str) -> float | str:
    if not evals:
        return "-"
    best = max(evals, key=lambda h: h[f"eval_{primary}"])
    return round(float(best["epoch"]), 1)


def table() -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    order = {d: i for i, d in enumerate(SETTINGS)}
    return sorted(rows, key=lambda r: (order.get(r["dataset"], 9), list(SETTINGS[r["dataset"]]).index(r["setting"])
                                       if r["setting"] in SETTINGS[r["dataset"]] else 99))


COLUMNS = ["dataset", "setting", "r", "lr", "max epochs", "epochs run", "best epoch", "refit steps", "best val",
           "test", "train s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(SETTINGS))
    parser.add_argument("--settings", default=None, help="comma-separated setting names (default: all of a dataset)")
    parser.add_argument("--table", action="store_true", help="only print the table of finished rows")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for dataset in args.datasets.split(","):
            for setting in (args.settings.split(",") if args.settings else SETTINGS[dataset]):
                if setting in SETTINGS[dataset]:
                    run_row(dataset, setting)
                    print_table("defaults study (so far)", table(), COLUMNS)
    rows = table()
    print_table("defaults study: test accuracy (banking77, demo) / entity F1 (wnut17)", rows, COLUMNS)
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
