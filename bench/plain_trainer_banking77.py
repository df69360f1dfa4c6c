"""The baseline for bench/banking77.py: a plain transformers-Trainer script, written as the Hugging Face text
classification tutorial does it (tokenize with truncation, DataCollatorWithPadding, TrainingArguments defaults:
batch 8, lr 5e-5, linear decay, no warmup). Same model, same train/validation/test examples, same epochs.

Run on its own:  python bench/plain_trainer_banking77.py SPLITS_DIR EPOCHS
(SPLITS_DIR holds train/validation/test.jsonl with text/label, as written by a tuneforge run's data/ folder).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def run(splits_dir: Path, epochs: float, out_dir: Path, model_path: str) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    def load(name: str) -> list[dict]:
        return [json.loads(line) for line in (splits_dir / f"{name}.jsonl").read_text().splitlines()]

    train, val, test = load("train"), load("validation"), load("test")
    labels = sorted({r["label"] for r in train})
    index = {lab: i for i, lab in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def to_dataset(rows: list[dict]) -> Dataset:
        ds = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [index[r["label"]] for r in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True), batched=True)

    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    marks: list[tuple[float, float]] = []  # (seconds since start, validation accuracy)
    start = [0.0]

    def accuracy(pred: object) -> dict:
        acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())  # type: ignore[attr-defined]
        marks.append((time.perf_counter() - start[0], acc))
        return {"accuracy": acc}

    args = TrainingArguments(output_dir=str(out_dir), num_train_epochs=epochs, eval_strategy="epoch",
                             save_strategy="no", report_to="none", disable_tqdm=True, seed=42, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=to_dataset(train), eval_dataset=to_dataset(val),
                      processing_class=tokenizer, compute_metrics=accuracy)
    start[0] = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start[0]
    eval_seconds = 0.0  # evaluation time is inside the marks; train time excludes nothing (same as tuneforge)
    marks_during_training = list(marks)  # predict() below calls compute_metrics too; it is not a validation point
    pred = trainer.predict(to_dataset(test))
    test_pred = np.argmax(pred.predictions, -1)
    from sklearn.metrics import f1_score

    return {"train_seconds": seconds, "eval_seconds": eval_seconds, "val_curve": marks_during_training,
            "test_accuracy": float((test_pred == pred.label_ids).mean()),
            "test_macro_f1": float(f1_score(pred.label_ids, test_pred, average="macro")),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


if __name__ == "__main__":
    import tuneforge  # noqa: F401 - privacy defaults (offline, no telemetry)
    from tuneforge.models.loading import default_model_path

    print(json.dumps(run(Path(sys.argv[1]), float(sys.argv[2]), Path("/tmp/plain-trainer"),
                         str(default_model_path())), indent=2))
