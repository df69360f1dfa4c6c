"""SFT time to quality: tuneforge's sft settings against plain TRL (SFTTrainer) on the same GSM8K questions, the same
model (TinyStories-656K, full fine-tuning) and the same tokens.

Both train on exactly the token sequences tuneforge's sft task encodes (chat template, loss on the answer only): TRL
gets them pre-tokenized with `completion_mask`, so the comparison is of the training loops and their settings, not of
two renderings. Both final models are scored by one function (tuneforge's `SFTTask.answer_loss`: mean negative
log-likelihood per answer token on held-out GSM8K test questions). `train s` is each trainer's own training time
(`train_runtime` for TRL, `train.train_seconds` for tuneforge), with one torch thread for both.

The question each row answers: does it reach TRL's held-out answer loss, and in what share of TRL's time?

    python bench/sft_time_to_quality.py                          # TRL, then every tuneforge row
    python bench/sft_time_to_quality.py --rows tokens4096-lr2e-3 --skip-trl

Writes bench/results/sft_time_to_quality.json and docs/bench/sft_time_to_quality.md (its table section).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date
from typing import Any

from _common import MODELS, RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save, write_doc_section

TRL = {"learning_rate": 5e-4, "batch_size": 16, "epochs": 1.0}  # the plain-TRL settings
# tuneforge rows: (batch setting, learning rate, epochs). `batch_size` rows are packed rows per step (the old way);
# `batch_tokens` rows ask for a number of tokens per step, which the sft task turns into packed rows.
ROWS: dict[str, dict[str, Any]] = {
    "rows16-lr5e-4": {"training": {"batch_size": 16, "learning_rate": 5e-4}},
    "tokens4096-lr5e-4": {"training": {"batch_tokens": 4096, "learning_rate": 5e-4}},
    "tokens4096-lr1e-3": {"training": {"batch_tokens": 4096, "learning_rate": 1e-3}},
    "tokens4096-lr2e-3": {"training": {"batch_tokens": 4096, "learning_rate": 2e-3}},
    "tokens2048-lr5e-4": {"training": {"batch_tokens": 2048, "learning_rate": 5e-4}},
    "tokens2048-lr1e-3": {"training": {"batch_tokens": 2048, "learning_rate": 1e-3}},
    "defaults": {"training": {}},
}


TRAIN_CALLS: list[dict[str, float]] = []


def _time_every_trainer() -> None:
    """Wrap transformers' Trainer.train (TRL's SFTTrainer and tuneforge's trainer both run it) to record its wall
    and CPU seconds. CPU seconds (one torch thread) are the fair measure on shared cores: wall time there depends on
    what else runs, CPU time on the work done."""
    import transformers

    original = transformers.Trainer.train

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            TRAIN_CALLS.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu})

    transformers.Trainer.train = timed


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--test-rows", type=int, default=200)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--skip-trl", action="store_true", help="reuse the TRL row of the last results file")
    return p.parse_args()


def _pairs(path: str, n: int) -> list[dict[str, str]]:
    with open(path) as f:
        rows = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
    return [{"prompt": r["question"], "completion": r["answer"]} for r in rows]


def _sft_task(max_length: int) -> Any:
    from tuneforge.tasks.sft import SFT, SFTParams

    return SFT(SFTParams(eval_generations=0, forgetting={"enabled": False}))


def _examples(task: Any, pairs: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["completion"]}]}
            for p in pairs]


def _answer_loss(task: Any, model: Any, tokenizer: Any, test: list[dict[str, Any]], max_length: int) -> float:
    loss, _count = task.answer_loss(model, tokenizer, test, max_length, 16)
    return loss


def run_trl(model_dir: str, train: list[dict[str, Any]], test: list[dict[str, Any]], max_length: int,
            work: Any) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    task = _sft_task(max_length)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task.prepare_tokenizer(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = task._encode_rows(train, tokenizer, max_length)  # the very tokens tuneforge trains on
    rows = [{"input_ids": r["input_ids"], "completion_mask": [int(x != -100) for x in r["labels"]]} for r in encoded]
    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(output_dir=str(work / "trl"), learning_rate=TRL["learning_rate"],
                     per_device_train_batch_size=TRL["batch_size"], num_train_epochs=TRL["epochs"],
                     completion_only_loss=True, packing=False, max_length=max_length, report_to=[],
                     save_strategy="no", logging_steps=50, seed=42, use_cpu=True, dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    out = trainer.train()
    tokens = sum(len(r["input_ids"]) for r in rows) * TRL["epochs"]
    timing = TRAIN_CALLS[-1]
    return {"row": "plain TRL (SFTTrainer, no packing)", "lr": TRL["learning_rate"],
            "per step": f"{TRL['batch_size']} rows", "steps": out.global_step,
            "train s": timing["wall"], "train CPU s": timing["cpu"], "tokens/s (CPU)": tokens / timing["cpu"],
            "answer loss": _answer_loss(task, model, tokenizer, test, max_length)}


def run_tuneforge(name: str, model_dir: str, work: Any, test: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.registry.loaded_run import load_run

    spec = ROWS[name]
    cfg = parse_config({
        "name": f"ttq-{name}", "output_dir": str(work / "runs"), "model": {"path": model_dir},
        "data": {"train": str(work / "train.jsonl"), "validation": str(work / "validation.jsonl"),
                 "test": str(work / "test.jsonl"), "max_length": max_length},
        "task": {"name": "sft", "eval_generations": 0, "forgetting": {"enabled": False}},
        "method": {"name": "full"},
        "training": {"epochs": 1, "seed": 42, "threads": 1, "early_stopping": {"patience": None},
                     **spec["training"]},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": []},
    })
    shutil.rmtree(cfg.run_dir, ignore_errors=True)
    result = tuneforge.train(cfg, quiet=True)
    info, timing = result.train_info, TRAIN_CALLS[-1]
    run = load_run(cfg.run_dir)
    task = _sft_task(max_length)
    t = cfg.training
    per_step = (f"{t.batch_tokens} tokens" if t.batch_tokens else f"{t.batch_size} packed rows")
    return {"row": f"tuneforge {name}", "lr": t.learning_rate or "method default", "per step": per_step,
            "steps": info["steps"], "train s": timing["wall"], "train CPU s": timing["cpu"],
            "tokens/s (CPU)": _trained_tokens(cfg.run_dir) / timing["cpu"],
            "answer loss": _answer_loss(task, run.model(), run.tokenizer, test, max_length)}


def _trained_tokens(run_dir: Any) -> int:
    """Tokens of the encoded training rows the run stepped over in its one epoch (packed rows hold no padding
    between examples; the tail of a row is padding, not counted)."""
    rows = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").open()]
    from transformers import AutoTokenizer

    from tuneforge.tasks.chat_templates import render

    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    texts = [render(tok, tok.chat_template, r["messages"]) for r in rows]
    return sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])


def main() -> None:
    import tuneforge  # noqa: F401  (first: it turns every library's telemetry off before they load)

    args = _args()
    data = require_shared("data/gsm8k")
    model_dir = str(require_shared(MODELS["tinystories"][0]))
    import torch

    torch.set_num_threads(1)
    _time_every_trainer()
    work = RESULTS / "sft_time_to_quality"
    work.mkdir(parents=True, exist_ok=True)
    train_pairs = _pairs(str(data / "train.jsonl"), args.train_rows)
    test_pairs = _pairs(str(data / "test.jsonl"), args.test_rows)
    for name, pairs in (("train", train_pairs), ("test", test_pairs)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    # A small validation file of its own, so tuneforge trains on all the rows TRL gets (no split carved off) and its
    # one end-of-epoch evaluation costs little; the test questions after it are not used for training either.
    val = _pairs(str(data / "test.jsonl"), args.test_rows + 16)[args.test_rows:]
    (work / "validation.jsonl").write_text("".join(json.dumps(p) + "\n" for p in val))
    task = _sft_task(args.max_length)
    test = _examples(task, test_pairs)
    trl_file = work / f"trl_row_{args.train_rows}_{args.test_rows}.json"  # kept: the TRL row is the slow one
    if args.skip_trl and trl_file.is_file():
        rows = [json.loads(trl_file.read_text())]
    else:
        rows = [run_trl(model_dir, _examples(task, train_pairs), test, args.max_length, work)]
        trl_file.write_text(json.dumps(rows[0]))
    print(rows[0])
    for name in args.rows.split(","):
        rows.append(run_tuneforge(name, model_dir, work, test, args.max_length))
        print(rows[-1])
    trl = rows[0]
    for r in rows:
        r["CPU time vs TRL"] = r["train CPU s"] / trl["train CPU s"]
        r["reaches TRL loss"] = "yes" if r["answer loss"] <= trl["answer loss"] + 1e-9 else "no"
    columns = ["row", "lr", "per step", "steps", "train s", "train CPU s", "tokens/s (CPU)", "answer loss",
               "CPU time vs TRL", "reaches TRL loss"]
    print_table("SFT time to quality (GSM8K, TinyStories-656K, full)", rows, columns)
    meta = {"machine": machine(), "train_rows": args.train_rows, "test_rows": args.test_rows,
            "max_length": args.max_length, "date": str(date.today())}
    save("sft_time_to_quality", rows, meta)
    text = (f"## Table\n\n`python bench/sft_time_to_quality.py` on {meta['machine']}, {date.today()}, one torch "
            f"thread; {args.train_rows} GSM8K training questions, answer loss on {args.test_rows} test questions, "
            "one epoch each.\n\n" + markdown_table(rows, columns))
    write_doc_section(ROOT / "docs" / "bench" / "sft_time_to_quality.md", "table", text, "# SFT time to quality")


if __name__ == "__main__":
    main()
