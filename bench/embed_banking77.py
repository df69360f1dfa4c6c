"""BANKING77 as a retrieval problem: does fine-tuning the bundled MiniLM as an embedding model find same-intent texts?

    OMP_NUM_THREADS=1 python bench/embed_banking77.py                 # base, full and LoRA rows
    OMP_NUM_THREADS=1 python bench/embed_banking77.py --per-label-train 40 --per-label-test 20

Queries are test.csv texts, the corpus is train.csv texts, and a corpus text is relevant when it has the query's
intent. Both files are subsampled per intent (seeded) so the table fits a shared 2-core machine; the fine-tuned rows
train with `task: embedding, data: labels` on the subsampled train.csv (tuneforge splits off 20% for validation,
so that each intent has two validation texts to pair; they stay in the corpus). Also: kNN-classifier accuracy
(similarity-weighted vote of the 10 nearest corpus texts) and the Spearman correlation on tuneforge's general-English
reference pairs (forgetting). Writes
bench/results/embed_banking77.json and docs/bench/embed_banking77.md.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

METHODS: dict[str, dict[str, Any]] = {  # chosen before looking at test; not tuned
    "full": {"epochs": 2, "learning_rate": 1e-4},
    "lora": {"epochs": 2, "learning_rate": 1e-3, "method": {"r": 16, "alpha": 32}},
}
COLUMNS = ["model", "recall@1", "recall@10", "MRR@10", "nDCG@10", "kNN accuracy", "reference Spearman",
           "train s"]


def subsample(src: Path, dst: Path, per_label: int, seed: int) -> list[dict[str, str]]:
    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["category"]].append(row)
    rng = random.Random(seed)
    picked = [r for label in sorted(by_label) for r in rng.sample(by_label[label], min(per_label,
                                                                                        len(by_label[label])))]
    rng.shuffle(picked)
    with dst.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "category": r["category"]} for r in picked)
    return picked


def scores(query_vecs: np.ndarray, corpus_vecs: np.ndarray, query_labels: list[str],
           corpus_labels: list[str]) -> dict[str, float]:
    from tuneforge.evaluation.ranking import per_query_scores, summarise, top_k
    from tuneforge.evaluation.retrieval import knn_vote

    names = sorted(set(corpus_labels))
    index = {n: i for i, n in enumerate(names)}
    by_label: dict[str, set[int]] = defaultdict(set)
    for i, lab in enumerate(corpus_labels):
        by_label[lab].add(i)
    ranked = top_k(query_vecs, corpus_vecs, 10)
    means, cis = summarise(per_query_scores(ranked, [by_label[lab] for lab in query_labels]))
    sims = np.take_along_axis(query_vecs @ corpus_vecs.T, ranked, axis=1)
    votes = knn_vote(sims, ranked, np.array([index[lab] for lab in corpus_labels]), len(names))
    knn = float(np.mean([names[int(v)] == lab for v, lab in zip(votes.argmax(1), query_labels, strict=True)]))
    row = {"recall@1": means["recall_at_1"], "recall@10": means["recall_at_10"], "MRR@10": means["mrr_at_10"],
           "nDCG@10": means["ndcg_at_10"], "kNN accuracy": knn}
    row["nDCG@10 95% CI"] = f"[{cis['ndcg_at_10']['low']:.4f}, {cis['ndcg_at_10']['high']:.4f}]"
    return row


def reference(embed: Any) -> float:
    from tuneforge.evaluation.ranking import read_reference_pairs, reference_spearman

    pairs = read_reference_pairs()
    return reference_spearman(embed([str(p["sentence1"]) for p in pairs]), embed([str(p["sentence2"]) for p in pairs]),
                              [float(p["score"]) for p in pairs])


def config(method: str, train: Path, test: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"embed-banking77-{method}", "output_dir": str(out), "model": {"path": "default"},
            "data": {"train": str(train), "test": str(test), "columns": {"text": "text", "label": "category"},
                     "max_length": 64, "split": {"train": 0.8, "validation": 0.2, "test": 0.0}},
            "task": {"name": "embedding", "data": "labels"},
            "method": {"name": method, **settings.get("method", {})},
            "training": {"epochs": settings["epochs"], "learning_rate": settings["learning_rate"], "batch_size": 32,
                         "seed": 42, "threads": 1, "early_stopping": {"patience": None}},
            "tracking": {"mlflow": False}, "evaluation": {"baselines": []}}


def with_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    import yaml

    for item in overrides:
        key, _, value = item.partition("=")
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--per-label-train", type=int, default=12)
    parser.add_argument("--per-label-test", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--name", default="embed_banking77",
                        help="results file bench/results/NAME.json; the doc is rewritten only for the default name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of every fine-tuned row's config, e.g. training.epochs=3 (YAML value)")
    parser.add_argument("--render", action="store_true", help="rewrite the doc from bench/results only")
    parser.add_argument("--compare", action="store_true",
                        help="also `tuneforge compare` the base encoder against the tuned runs (RAG/kNN rows); "
                             "its report.md goes to docs/bench/embed_banking77_compare.md")
    args = parser.parse_args()
    if args.render:
        import json

        saved = json.loads((RESULTS / "embed_banking77.json").read_text())
        write_doc(saved["rows"], saved["meta"])
        return
    from sentence_transformers import SentenceTransformer

    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.models.loading import default_model_path
    from tuneforge.registry.loaded_run import load_run

    data = require_shared("data/banking77")
    work = RESULTS / f"{args.name}_runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train_rows = subsample(data / "train.csv", work / "train.csv", args.per_label_train, 42)
    test_rows = subsample(data / "test.csv", work / "test.csv", args.per_label_test, 42)
    train, test = work / "train.csv", work / "test.csv"
    corpus, corpus_labels = [r["text"] for r in train_rows], [r["category"] for r in train_rows]
    queries, query_labels = [r["text"] for r in test_rows], [r["category"] for r in test_rows]

    base = SentenceTransformer(str(default_model_path()), device="cpu")
    base.max_seq_length = 64

    def base_embed(texts: list[str]) -> np.ndarray:
        return base.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    rows = [{"model": "base all-MiniLM-L6-v2", **scores(base_embed(queries), base_embed(corpus), query_labels,
                                                      corpus_labels), "reference Spearman": reference(base_embed)}]
    run_dirs, cfg = [], None
    for method in [m for m in args.methods.split(",") if m]:
        start = time.perf_counter()
        cfg = with_overrides(config(method, train, test, work, METHODS[method]), args.set)
        result = tuneforge.train(parse_config(cfg), quiet=True)
        run_dirs.append(str(result.run_dir))
        seconds = time.perf_counter() - start
        run = load_run(result.run_dir)
        row = scores(run.embed(queries), run.embed(corpus), query_labels, corpus_labels)
        rows.append({"model": f"fine-tuned ({method})", **row, "reference Spearman": reference(run.embed),
                     "train s": round(result.train_info["train_seconds"], 1), "wall s": round(seconds, 1)})
    meta = {"machine": machine(), "train_texts": len(corpus), "test_queries": len(queries),
            "per_label_train": args.per_label_train, "per_label_test": args.per_label_test,
            "methods": {m: METHODS[m] for m in args.methods.split(",") if m}, "overrides": args.set,
            "distinct_label_batches": with_overrides(config("full", train, test, work, METHODS["full"]),
                                                     args.set)["task"].get("distinct_label_batches", True)}
    print_table("BANKING77 retrieval (test queries against the train corpus)", rows, COLUMNS)
    save(args.name, rows, meta)
    if args.name == "embed_banking77":
        write_doc(rows, meta)
    if args.compare and cfg is not None:
        from tuneforge.evaluation.compare import compare

        compared = compare(parse_config(cfg), runs=run_dirs, out_dir=work / "compare")
        folder, docs = Path(compared.out_dir), ROOT / "docs" / "bench"
        text = (folder / "report.md").read_text()
        for figure in ("comparison.png", "score_vs_latency.png"):  # the report's figures, beside the page
            if (folder / figure).is_file():
                shutil.copy(folder / figure, docs / f"embed_banking77_compare_{figure}")
                text = text.replace(f"]({figure})", f"](embed_banking77_compare_{figure})")
        (docs / "embed_banking77_compare.md").write_text(
            f"<!-- written by `python bench/embed_banking77.py --methods full --compare` on {machine()} -->\n\n"
            + text)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def write_doc(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    base = rows[0]
    lines = ["# BANKING77 as retrieval: base MiniLM against fine-tuned embeddings", "",
             f"Command: `OMP_NUM_THREADS=1 python bench/embed_banking77.py --per-label-train "
             f"{meta['per_label_train']} --per-label-test {meta['per_label_test']}"
             f"{''.join(f' --set {o}' for o in meta.get('overrides', []))}` on {meta['machine']}; other "
             "agents' work shared the 2 cores, so times are upper bounds.", "",
             f"Queries: {meta['test_queries']} test.csv texts ({meta['per_label_test']} per intent); corpus: "
             f"{meta['train_texts']} train.csv texts ({meta['per_label_train']} per intent), both subsampled with "
             "seed 42 to fit the loaded machine; tuneforge holds 20% of the train sample out for validation (two "
             "texts per intent to pair), and those texts stay in the corpus. Relevant = same intent. "
             "recall@k = relevant texts in the top k / min(k, relevant texts). "
             "kNN accuracy: similarity-weighted vote of the 10 nearest corpus texts. "
             "Reference Spearman: tuneforge's 80 general-English sentence pairs "
             "(src/tuneforge/templates/reference_sentence_pairs.jsonl), the forgetting check.", "",
             markdown_table(rows, [*COLUMNS, "nDCG@10 95% CI"]), ""]
    for row in rows[1:]:
        gain = 100 * (row['nDCG@10'] - base['nDCG@10'])
        drop = 100 * (base['reference Spearman'] - row['reference Spearman'])
        lines.append(f"- {row['model']}: nDCG@10 {gain:+.1f} points over the base (target +10: "
                     f"{'met' if gain >= 10 else 'not met'}), reference Spearman {-drop:+.1f} points (target: under "
                     f"2 points lost: {'met' if drop < 2 else 'not met'}).")
    lines += ["", f"Settings (not tuned on test): {meta['methods']}; batch 32, max_length 64, seed 42, "
              "multiple-negatives ranking loss; batches hold no duplicate text and at most one pair per intent "
              f"(task.distinct_label_batches: {meta.get('distinct_label_batches', True)}).", ""]
    (ROOT / "docs" / "bench" / "embed_banking77.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
