"""Classification entrants for `tuneforge compare`, all measured on one test split:

- zero-shot: similarity of the query to each label's description (an encoder's "prompt");
- label similarity + neighbour vote (an encoder's nearest thing to few-shot prompting): the zero-shot scores plus
  a similarity-weighted vote of the k training examples most similar to the query (k = compare.few_shot_k);
- kNN retrieval: similarity-weighted vote of the rag_k nearest training examples in a FAISS index;
- linear probe: logistic regression on frozen features;
- each fine-tuned run, and each run combined with retrieval: (1 - w) * p_model + w * p_kNN, w chosen on the
  validation split (never on test).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.special import softmax

from tuneforge.evaluation.compare_types import CompareInputs, Entrant
from tuneforge.evaluation.resources import PeakMemory, folder_bytes, latencies_ms
from tuneforge.evaluation.stats import macro_f1


def _few_shot_scores(query: np.ndarray, label_vecs: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                     train_y: np.ndarray) -> np.ndarray:
    out = query @ label_vecs.T
    for row, (sc, ix) in enumerate(zip(scores, ids, strict=True)):
        valid = ix >= 0
        np.add.at(out[row], train_y[ix[valid]], sc[valid])
    return out


def classification_entrants(inp: CompareInputs) -> tuple[np.ndarray, list[Entrant]]:
    from tuneforge.evaluation.baselines import fit_linear_probe, label_description
    from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings
    from tuneforge.evaluation.retrieval import VectorIndex, knn_vote
    from tuneforge.models.loading import load_tokenizer

    cfg, splits, labels, task = inp.cfg, inp.data.splits, inp.data.labels, inp.task
    if task.params.multi_label:
        from tuneforge.errors import ConfigError

        raise ConfigError("compare supports single-label classification only", key="task.multi_label",
                          fix="compare a single-label version of the task, or read each run's report")
    cmp, max_len = cfg.compare, cfg.data.max_length
    index_of = {lab: i for i, lab in enumerate(labels)}
    y = {name: np.array([index_of[e["label"]] for e in exs]) for name, exs in splits.items()}
    texts = {name: [task.text_of(e) for e in exs] for name, exs in splits.items()}
    probe_texts = texts["test"][:cmp.latency_examples]
    entrants: list[Entrant] = []

    tokenizer = load_tokenizer(inp.model_path, cfg.model.trust_remote_code)
    with PeakMemory() as setup_mem:
        encoder = load_encoder(inp.model_path)
        start = time.perf_counter()
        vecs = {name: sentence_embeddings(encoder, tokenizer, texts[name], max_len) for name in splits}
        embed_train_s = time.perf_counter() - start  # embedding cost of the training set
        label_vecs = sentence_embeddings(encoder, tokenizer,
                                         [cmp.label_descriptions.get(lab, label_description(lab)) for lab in labels])
        start = time.perf_counter()
        index = VectorIndex.build(vecs["train"], [{"text": t, "label": lab} for t, lab in
                                                  zip(texts["train"], [e["label"] for e in splits["train"]],
                                                      strict=True)], seed=cfg.training.seed)
        index_dir = index.save(inp.out_dir / "index")
        index_s = embed_train_s + time.perf_counter() - start
    inp.console.print(f"retrieval index: {index.size} training examples, {index.kind}, saved in {index_dir}")

    def embed_one(text: str) -> np.ndarray:
        return sentence_embeddings(encoder, tokenizer, [text], max_len)

    # zero-shot
    with PeakMemory() as mem:
        preds = (vecs["test"] @ label_vecs.T).argmax(1)
        lat = latencies_ms(lambda t: (embed_one(t) @ label_vecs.T).argmax(1), probe_texts)
    entrants.append(Entrant("zero_shot", "zero-shot (similarity to label descriptions)", "baseline", preds,
                            0.0, lat, max(mem.peak_mb, setup_mem.peak_mb), 0, 0))

    # label similarity + a vote of the k most similar training examples (an encoder cannot read demonstrations)
    k = cmp.few_shot_k
    with PeakMemory() as mem:
        scores, ids = index.search(vecs["test"], k)
        preds = _few_shot_scores(vecs["test"], label_vecs, scores, ids, y["train"]).argmax(1)

        def few_shot_one(t: str) -> Any:
            q = embed_one(t)
            s, i = index.search(q, k)
            return _few_shot_scores(q, label_vecs, s, i, y["train"]).argmax(1)

        lat = latencies_ms(few_shot_one, probe_texts)
    entrants.append(Entrant("neighbour_vote", f"label similarity + vote of {k} similar examples", "baseline", preds,
                            index_s, lat, max(mem.peak_mb, setup_mem.peak_mb), 0, folder_bytes(index_dir)))

    # kNN retrieval
    rag_k = cmp.rag_k
    with PeakMemory() as mem:
        scores, ids = index.search(vecs["test"], rag_k)
        knn_test = knn_vote(scores, ids, y["train"], len(labels))
        lat = latencies_ms(lambda t: knn_vote(*index.search(embed_one(t), rag_k), y["train"], len(labels)),
                           probe_texts)
    entrants.append(Entrant("knn_rag", f"kNN retrieval ({rag_k} neighbours, FAISS)", "baseline", knn_test.argmax(1),
                            index_s, lat, max(mem.peak_mb, setup_mem.peak_mb), 0, folder_bytes(index_dir)))
    knn_val = knn_vote(*index.search(vecs["validation"], rag_k), y["train"], len(labels)) \
        if len(vecs["validation"]) else np.zeros((0, len(labels)))
    knn_lat = lat

    # linear probe
    with PeakMemory() as mem:
        start = time.perf_counter()
        probe = fit_linear_probe(vecs["train"], y["train"], vecs["validation"], y["validation"],
                                 seed=cfg.training.seed)
        probe_s = embed_train_s + time.perf_counter() - start
        preds = probe.predict(vecs["test"])
        lat = latencies_ms(lambda t: probe.predict(embed_one(t)), probe_texts)
    n_coef = int(probe.coef_.size + probe.intercept_.size)
    entrants.append(Entrant("linear_probe", "linear probe (frozen features)", "baseline", preds, probe_s, lat,
                            max(mem.peak_mb, setup_mem.peak_mb), n_coef, n_coef * 4))
    del vecs["train"]

    for run in inp.runs:
        entrants += _run_entrants(inp, run, y, knn_test, knn_val, knn_lat)
    return y["test"], entrants


def _run_entrants(inp: CompareInputs, run: Any, y: dict[str, np.ndarray], knn_test: np.ndarray,
                  knn_val: np.ndarray, knn_lat: list[float]) -> list[Entrant]:
    import gc

    cfg, labels = inp.cfg, inp.data.labels
    pairs = {name: [e.get("text_pair") for e in exs] for name, exs in inp.data.splits.items()}
    gc.collect()
    with PeakMemory() as mem:
        loaded = run.loaded()
        if list(loaded.labels) != list(labels):
            from tuneforge.errors import RunError

            raise RunError(f"run {run.path} was trained with other labels than this config's data",
                           fix="compare runs trained on the same data and config")
        raw = [e["text"] for e in inp.data.splits["test"]]

        def probs(name: str, xs: list[str]) -> np.ndarray:
            logits = loaded.task.logits(loaded.model, loaded.tokenizer, xs, pairs[name], loaded.max_length,
                                        cfg.training.eval_batch_size)
            return softmax(logits, axis=1)

        p_test = probs("test", raw)
        val_texts = [e["text"] for e in inp.data.splits["validation"]]
        p_val = probs("validation", val_texts) if val_texts else None
        one = [(t, p) for t, p in zip(raw, pairs["test"], strict=True)][:cfg.compare.latency_examples]
        lat = latencies_ms(lambda tp: loaded.task.logits(loaded.model, loaded.tokenizer, [tp[0]], [tp[1]],
                                                         loaded.max_length, 1), one)
    train = run.metrics.get("train", {})
    method = run.config.method.name
    size = folder_bytes(run.path / "model")
    out = [Entrant(f"run:{run.path.name}", f"fine-tuned {method} ({run.path.name})", "fine_tuned", p_test.argmax(1),
                   train.get("train_seconds"), lat, mem.peak_mb, int(train.get("trainable_params", 0)), size)]
    if cfg.compare.combine and p_val is None:
        inp.console.print("no validation split: the run + retrieval row is skipped (its mixing weight is chosen "
                          "on validation, never on test)")
    elif cfg.compare.combine:
        # Mixing weight chosen on the validation headline metric; 0 means retrieval does not help this run.
        grid = np.linspace(0, 0.9, 10)
        val_f1 = [macro_f1(y["validation"], ((1 - w) * p_val + w * knn_val).argmax(1)) for w in grid]
        w = float(grid[int(np.argmax(val_f1))])
        preds = ((1 - w) * p_test + w * knn_test).argmax(1)
        out.append(Entrant(f"run+rag:{run.path.name}", f"fine-tuned {method} + kNN retrieval (w={w:.1f})",
                           "combined", preds, train.get("train_seconds"),
                           [a + b for a, b in zip(lat, knn_lat, strict=False)], mem.peak_mb,
                           int(train.get("trainable_params", 0)), size + folder_bytes(inp.out_dir / "index"),
                           note="latency = model + retrieval lookup, timed separately", base=f"run:{run.path.name}"))
    run.release()  # free the run's model before the next one loads
    return out
