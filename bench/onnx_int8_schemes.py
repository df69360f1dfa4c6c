"""Which onnxruntime int8 settings keep the default encoder (all-MiniLM-L6-v2) closest to float, on BANKING77 text.

    OMP_NUM_THREADS=1 python bench/onnx_int8_schemes.py --per-class 5 [--schemes onnxruntime-defaults,per-channel]
    python bench/onnx_int8_schemes.py --weights-only   # int8 error of each weight table, per tensor vs per channel

A cheap stand-in for the full export benchmark (bench/export_banking77.py needs a fine-tuned run and scores each
export on 770+ rows): the pretrained encoder with tuneforge's masked-mean pooling is exported to ONNX once, then
quantised with each scheme in tuneforge.export.onnx.INT8_SCHEMES. Per scheme: the relative RMS error of the
sentence embeddings against the ONNX fp32 graph, their mean cosine, and the accuracy of a nearest-centroid
classifier (class means of `--per-class` train texts per BANKING77 intent) on `--per-class` test texts per intent,
next to the same classifier on fp32 embeddings (measured in the same run).
Writes bench/results/onnx_int8_schemes.json.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, machine, markdown_table, print_table, require_shared, save

COLUMNS = ["model", "embedding rel. error", "mean cosine", "nearest-centroid acc", "acc diff", "agreement with fp32",
           "p50 b1 ms", "size MB"]


def rows_per_class(path: Path, n: int) -> tuple[list[str], list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            if len(seen[row["category"]]) < n:
                seen[row["category"]].append(row["text"])
    labels = sorted(seen)
    return [t for c in labels for t in seen[c]], [c for c in labels for _ in seen[c]]


def export_encoder(folder: Path) -> tuple[Any, Path]:
    """The default encoder with masked-mean pooling as model.onnx (output 'logits' = the sentence embedding)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.export.onnx import export_graph
    from tuneforge.models.loading import default_model_path

    path = default_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.forward_names = ["input_ids", "attention_mask", "token_type_ids"]

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return type("Out", (), {"logits": (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)})()

    folder.mkdir(parents=True, exist_ok=True)
    export_graph(MeanPooled(), tokenizer, folder / "model.onnx", ["a short text", "another one here"], 64)
    return tokenizer, folder / "model.onnx"


def embed(session: Any, tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    out, times = [], []
    for start in range(0, len(texts), 32):
        enc = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=64, return_tensors="np")
        feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
        out.append(session.run(None, feed)[0])
    for text in texts[:20]:
        enc = tokenizer([text], return_tensors="np")
        feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return np.concatenate(out), float(np.percentile(times, 50))


def centroid_accuracy(train: np.ndarray, train_y: list[str], test: np.ndarray, test_y: list[str]) -> np.ndarray:
    labels = sorted(set(train_y))
    norm = train / np.linalg.norm(train, axis=1, keepdims=True)
    centroids = np.stack([norm[[y == c for y in train_y]].mean(0) for c in labels])
    scores = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ centroids.T
    return np.array(labels)[scores.argmax(1)]


def weight_errors() -> dict[str, dict[str, float]]:
    """Relative RMS error of symmetric int8 (absmax scale) of the encoder's weights: one scale per tensor vs one per
    row (embedding tables) or output channel (Linear weights), and 7-bit (reduce_range) per tensor."""
    from safetensors.numpy import load_file

    from tuneforge.models.loading import default_model_path

    def error(x: np.ndarray, per_row: bool = False, levels: int = 127) -> float:
        scale = np.abs(x).max(axis=1, keepdims=True) if per_row else np.abs(x).max()
        scale = np.where(scale == 0, 1.0, scale / levels)
        return float(np.sqrt(((np.clip(np.round(x / scale), -levels, levels) * scale - x) ** 2).mean())
                     / np.sqrt((x ** 2).mean()))

    weights = load_file(str(next(Path(default_model_path()).glob("*.safetensors"))))
    out = {name: {"per_tensor": error(x), "per_row": error(x, True), "absmax": float(np.abs(x).max()),
                  "rms": float(np.sqrt((x ** 2).mean()))} for name, x in weights.items() if "embeddings.weight" in name
           or name.endswith("_embeddings.weight")}
    linear = [x for name, x in weights.items() if x.ndim == 2 and "embeddings" not in name]
    out["linear weights (mean)"] = {"per_tensor": float(np.mean([error(x) for x in linear])),
                                    "per_row": float(np.mean([error(x, True) for x in linear])),
                                    "per_tensor_7bit": float(np.mean([error(x, levels=63) for x in linear])),
                                    "count": len(linear)}
    return out


def main() -> None:
    import onnxruntime as ort

    from tuneforge.export.onnx import INT8_SCHEMES, quantize_graph

    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--schemes", default=",".join(INT8_SCHEMES), help="comma-separated INT8_SCHEMES names")
    parser.add_argument("--weights-only", action="store_true", help="only the weight quantisation errors")
    args = parser.parse_args()
    for name, figures in weight_errors().items():
        print(name, {k: round(v, 4) for k, v in figures.items()})
    if args.weights_only:
        return
    data = require_shared("data/banking77")
    train_x, train_y = rows_per_class(data / "train.csv", args.per_class)
    test_x, test_y = rows_per_class(data / "test.csv", args.per_class)
    work = RESULTS / "onnx_int8_schemes"
    shutil.rmtree(work, ignore_errors=True)
    tokenizer, fp32 = export_encoder(work / "fp32")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    rows, reference = [], {}
    for name in ["fp32", *args.schemes.split(",")]:
        path = fp32
        if name != "fp32":
            path = work / name / "model.onnx"
            path.parent.mkdir(parents=True)
            shutil.copy(fp32, path)
            quantize_graph(path, name)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        test, ms = embed(session, tokenizer, test_x)
        predicted = centroid_accuracy(embed(session, tokenizer, train_x)[0], train_y, test, test_y)
        accuracy = float(np.mean(predicted == np.array(test_y)))
        row = {"model": f"ONNX {name}", "nearest-centroid acc": accuracy, "p50 b1 ms": ms,
               "size MB": round(path.stat().st_size / 1e6, 1)}
        if name == "fp32":
            reference = {"test": test, "predicted": predicted, "accuracy": accuracy}
        else:
            ref = reference["test"]
            cos = (test * ref).sum(1) / np.linalg.norm(test, axis=1) / np.linalg.norm(ref, axis=1)
            row.update({"embedding rel. error": float(np.linalg.norm(test - ref) / np.linalg.norm(ref)),
                        "mean cosine": float(cos.mean()), "acc diff": f"{accuracy - reference['accuracy']:+.4f}",
                        "agreement with fp32": float(np.mean(predicted == reference["predicted"]))})
        rows.append(row)
        print(row, flush=True)
    print_table("Default encoder, ONNX int8 schemes vs fp32 (BANKING77 text)", rows, COLUMNS)
    meta = {"machine": machine(), "per_class": args.per_class, "test_texts": len(test_x), "train_texts": len(train_x)}
    save("onnx_int8_schemes_" + args.schemes.replace(",", "+"), rows, meta)
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
