"""Token-classification (NER) entrants for `tuneforge compare`, scored by entity-level micro F1. Each row's output
is one (true positives, predicted, gold) entity count triple per test sentence, so the bootstrap and the paired test
resample whole sentences, the unit entities are scored in.

- neighbour vote (an encoder's stand-in for few-shot): the few_shot_k training sentences most similar to the test
  sentence; each word takes the tag of its most similar word among them;
- kNN retrieval: each word's tag is the similarity-weighted vote of its rag_k nearest training words (FAISS);
- linear probe on frozen word features; each fine-tuned run.

There is no zero-shot row (an encoder has no notion of an entity type without examples) and no run + retrieval
row (runs expose tags, not per-word distributions to mix).
"""

from __future__ import annotations

import time

import numpy as np

from tuneforge.evaluation.compare_types import CompareInputs, Entrant
from tuneforge.evaluation.resources import PeakMemory, folder_bytes, latencies_ms


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def entity_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    from tuneforge.evaluation.metrics import entity_spans

    rows = []
    for g, p in zip(gold, pred, strict=True):
        gs, ps = entity_spans(g), entity_spans(p)
        rows.append((len(gs & ps), len(ps), len(gs)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def token_classification_entrants(inp: CompareInputs) -> tuple[np.ndarray, list[Entrant]]:
    from tuneforge.evaluation.baselines import fit_linear_probe
    from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings, word_embeddings
    from tuneforge.evaluation.retrieval import VectorIndex, knn_vote
    from tuneforge.models.loading import load_tokenizer
    from tuneforge.tasks.token_classification import _repair, tag_ids, tag_names

    cfg, splits, cmp = inp.cfg, inp.data.splits, inp.cfg.compare
    tags = tag_names(inp.data.labels)
    tag_id = {t: i for i, t in enumerate(tags)}
    sentences = {n: [e["tokens"] for e in splits[n]] for n in splits}
    gold = [e["tags"] for e in splits["test"]]
    probe = sentences["test"][:cmp.latency_examples]
    tokenizer = load_tokenizer(inp.model_path, cfg.model.trust_remote_code)
    max_len = cfg.data.max_length
    with PeakMemory() as setup:
        encoder = load_encoder(inp.model_path)
        start = time.perf_counter()
        words = {n: [_normalise(w) for w in word_embeddings(encoder, tokenizer, sentences[n], max_len)]
                 for n in splits}
        train_vecs = np.concatenate(words["train"])
        train_y = np.concatenate([tag_ids(e, tag_id) for e in splits["train"]])
        index = VectorIndex.build(train_vecs, [{"tag": tags[int(y)]} for y in train_y], seed=cfg.training.seed)
        index_dir = index.save(inp.out_dir / "index")
        sent_vecs = {n: sentence_embeddings(encoder, tokenizer, [" ".join(s) for s in sentences[n]], max_len)
                     for n in ("train", "test")}
        sentence_index = VectorIndex.build(sent_vecs["train"], [{}] * len(sent_vecs["train"]))
        setup_s = time.perf_counter() - start
    inp.console.print(f"retrieval index: {index.size} training words, {index.kind}, saved in {index_dir}")
    offsets = np.cumsum([0] + [len(s) for s in sentences["train"]])

    def knn_tags(vecs: np.ndarray) -> list[str]:
        votes = knn_vote(*index.search(vecs, cmp.rag_k), train_y, len(tags))
        return _repair([tags[int(i)] for i in votes.argmax(1)])

    def few_shot_tags(vecs: np.ndarray, demo_ids: np.ndarray) -> list[str]:
        pool = [i for d in demo_ids if d >= 0 for i in range(offsets[d], offsets[d + 1])]
        if not pool or not len(vecs):
            return ["O"] * len(vecs)
        best = (vecs @ train_vecs[pool].T).argmax(1)
        return _repair([tags[int(train_y[pool[j]])] for j in best])

    def embed_words(tokens: list[str]) -> np.ndarray:
        return _normalise(word_embeddings(encoder, tokenizer, [tokens], max_len)[0])

    entrants = []
    with PeakMemory() as mem:
        _, demos = sentence_index.search(sent_vecs["test"], cmp.few_shot_k)
        preds = [few_shot_tags(v, d) for v, d in zip(words["test"], demos, strict=True)]

        def few_shot_one(tokens: list[str]) -> list[str]:
            q = sentence_embeddings(encoder, tokenizer, [" ".join(tokens)], max_len)
            _, d = sentence_index.search(q, cmp.few_shot_k)
            return few_shot_tags(embed_words(tokens), d[0])

        lat = latencies_ms(few_shot_one, probe)
    entrants.append(Entrant("neighbour_vote", f"nearest word's tag in {cmp.few_shot_k} similar sentences",
                            "baseline", entity_counts(gold, preds), setup_s, lat, max(mem.peak_mb, setup.peak_mb), 0,
                            folder_bytes(index_dir)))
    with PeakMemory() as mem:
        preds = [knn_tags(v) for v in words["test"]]
        lat = latencies_ms(lambda tokens: knn_tags(embed_words(tokens)), probe)
    entrants.append(Entrant("knn_rag", f"kNN retrieval ({cmp.rag_k} nearest training words, FAISS)", "baseline",
                            entity_counts(gold, preds), setup_s, lat, max(mem.peak_mb, setup.peak_mb), 0,
                            folder_bytes(index_dir)))
    with PeakMemory() as mem:
        start = time.perf_counter()
        val_y = np.concatenate([tag_ids(e, tag_id) for e in splits["validation"]]) \
            if splits["validation"] else np.zeros(0, dtype=int)
        val_x = np.concatenate(words["validation"]) if splits["validation"] else train_vecs[:0]
        clf = fit_linear_probe(train_vecs, train_y, val_x, val_y, seed=cfg.training.seed)
        fit_s = setup_s + time.perf_counter() - start
        preds = [_repair([tags[int(i)] for i in clf.predict(v)]) if len(v) else [] for v in words["test"]]
        lat = latencies_ms(lambda tokens: clf.predict(embed_words(tokens)), probe)
    n_coef = int(clf.coef_.size + clf.intercept_.size)
    entrants.append(Entrant("linear_probe", "linear probe (frozen word features)", "baseline",
                            entity_counts(gold, preds), fit_s, lat, max(mem.peak_mb, setup.peak_mb), n_coef,
                            n_coef * 4))
    for run in inp.runs:
        with PeakMemory() as mem:
            loaded = run.loaded()
            tagged = loaded.task.tag(loaded.model, loaded.tokenizer, sentences["test"], loaded.labels,
                                     loaded.max_length, cfg.training.eval_batch_size)
            lat = latencies_ms(lambda tokens, lm=loaded: lm.task.tag(lm.model, lm.tokenizer, [tokens], lm.labels,
                                                                     lm.max_length, 1), probe)
        info = run.metrics.get("train", {})
        entrants.append(Entrant(f"run:{run.path.name}", f"fine-tuned {run.config.method.name} ({run.path.name})",
                                "fine_tuned", entity_counts(gold, tagged), info.get("train_seconds"), lat,
                                mem.peak_mb, int(info.get("trainable_params", 0)), folder_bytes(run.path / "model")))
        run.release()
    return np.zeros(len(gold)), entrants
