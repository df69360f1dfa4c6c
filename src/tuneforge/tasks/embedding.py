"""Embedding fine-tuning for retrieval (RAG, search, recommendation), with sentence-transformers underneath.

Data: (anchor, positive[, negative]) pairs or triplets, or labelled texts where two texts of the same label make a
positive pair. Loss: multiple-negatives ranking (every other positive in the batch is a negative; the cached variant
reaches large effective batches in small memory), optionally wrapped in Matryoshka so truncated vectors stay good.
Batches never hold the same text twice (a duplicate positive would be an in-batch "negative" equal to the answer).
Hard negatives can be mined with the base model before training.

Scored on held-out queries: recall@1/5/10, MRR@10 and nDCG@10 (evaluation/ranking.py), the base model measured the
same way as a baseline row, and the Spearman correlation on general-English reference pairs before and after, which
shows forgetting. The trained model is saved as a sentence-transformers folder (LoRA merged into the weights,
bottleneck adapters as a module tuneforge provides), so `SentenceTransformer(run / "model")` loads it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.errors import ConfigError
from tuneforge.evaluation.compare_types import Comparison
from tuneforge.methods.base import HeadInfo
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams

METHODS_SUPPORTED = ("full", "lora", "dora", "adapter")


class EmbeddingParams(TaskParams):
    name: Literal["embedding"] = "embedding"
    data: Literal["pairs", "labels"] = Field(
        "pairs", description="'pairs': anchor/positive[/negative] records; 'labels': data.columns.text and "
                             "data.columns.label, two texts of one label make a positive pair.")
    anchor_column: str = Field("anchor", description="Query / anchor text column (data: pairs).")
    positive_column: str = Field("positive", description="Relevant text column (data: pairs).")
    negative_column: str | None = Field("negative", description="Optional hard-negative column, read when present.")
    loss: Literal["mnrl", "cached_mnrl"] = Field(
        "mnrl", description="Multiple-negatives ranking; 'cached_mnrl' computes it in mini-batches (GradCache), so "
                            "training.batch_size can be far larger than memory would allow.")
    mini_batch_size: int = Field(32, ge=1, description="Texts per forward pass of cached_mnrl.")
    scale: float = Field(20.0, gt=0, description="Inverse temperature of the ranking loss.")
    matryoshka_dims: list[int] | None = Field(None, description="Also train truncated vectors, e.g. [384, 128, 64].")
    hard_negatives: bool = Field(False, description="Mine one hard negative per training pair with the base model.")
    distinct_label_batches: bool = Field(
        True, description="data: labels: at most one pair per label in a batch, so no in-batch negative shares the "
                          "anchor's label (a batch then holds at most as many pairs as there are labels).")
    hard_negative_margin: float = Field(0.05, ge=0, lt=1, description="A mined negative must score this much below "
                                                                      "the positive (guards against false negatives).")


def _text(raw: dict[str, Any], column: str, role: str, key: str) -> str:
    if column not in raw:
        found = ", ".join(map(str, raw)) or "none"
        raise RecordError(f"missing column '{column}' (columns found: {found})",
                          fix=f"add '{column}' to every record, or set {key} to the column holding the {role}")
    value = raw[column]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"empty {role} in column '{column}'",
                          fix="fill it in or remove the record (--skip-invalid drops such records)")
    return value


def _vectors(model: Any, texts: list[str], batch_size: int) -> Any:
    import numpy as np

    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)


def _sample_hits(queries: list[str], corpus: list[str], ranked: Any, relevant: list[set[int]],
                 n: int = 6) -> list[dict[str, Any]]:
    """A few test queries for the report, misses first: a relevant text and the top hit."""
    rows = [{"text": q, "reference": corpus[min(rel)], "predicted": corpus[int(ids[0])] if len(ids) else "",
             "hit": bool(len(ids)) and int(ids[0]) in rel}
            for q, ids, rel in zip(queries, ranked, relevant, strict=True)]
    for row in rows:  # the report marks a row wrong when predicted differs from reference
        if row.pop("hit"):
            row["predicted"] = row["reference"] = row["predicted"]
    wrong = [r for r in rows if r["predicted"] != r["reference"]][:n]
    return wrong + [r for r in rows if r["predicted"] == r["reference"]][:n]


@TASKS.register
class Embedding(Task):
    name = "embedding"
    Params = EmbeddingParams
    primary_metric: ClassVar[str] = "ndcg_at_10"
    peft_task_type: ClassVar[str] = "FEATURE_EXTRACTION"
    pipeline_tag: ClassVar[str | None] = "sentence-similarity"
    baseline_names: ClassVar[tuple[str, ...]] = ("base_model",)
    comparison: ClassVar[Any] = Comparison(
        "tuneforge.evaluation.compare_embedding:embedding_entrants", "ndcg_at_10", True)
    training_metric: ClassVar[str | None] = "loss"  # the validation ranking loss
    loss_only_eval: ClassVar[bool] = True
    saves_whole_model: ClassVar[bool] = True
    params: EmbeddingParams

    def __init__(self, params: TaskParams) -> None:
        super().__init__(params)
        self.max_length: int | None = None  # data.max_length, set by check_config before the model is built
        self.seed = 0  # training.seed (check_config): which same-label text becomes a labelled example's positive

    def check_config(self, cfg: Any) -> None:
        from importlib.util import find_spec

        if find_spec("sentence_transformers") is None:
            raise ConfigError("task embedding trains with sentence-transformers, which is not installed",
                              key="task.name", fix="pip install 'tuneforge[embedding]'")
        if cfg.method.name not in METHODS_SUPPORTED:
            raise ConfigError(f"method {cfg.method.name!r} cannot train an embedding model here", key="method.name",
                              fix=f"use one of: {', '.join(METHODS_SUPPORTED)}")
        dims = self.params.matryoshka_dims
        if dims is not None and (not dims or min(dims) < 1):
            raise ConfigError("matryoshka_dims needs positive sizes", key="task.matryoshka_dims",
                              fix="e.g. [384, 256, 128, 64], or leave it out")
        self.max_length = cfg.data.max_length
        self.seed = cfg.training.seed

    # ---- data -------------------------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        p = self.params
        if p.data == "labels":
            text = _text(raw, columns.text, "text", "data.columns.text")
            value = raw.get(columns.label)
            if value is None or not str(value).strip():
                raise RecordError(f"missing or empty label in column '{columns.label}'",
                                  fix="label every record, or set data.columns.label (task.data: labels)")
            return {"anchor": text, "label": str(value).strip()}
        example = {"anchor": _text(raw, p.anchor_column, "anchor", "task.anchor_column"),
                   "positive": _text(raw, p.positive_column, "positive", "task.positive_column")}
        if p.negative_column and raw.get(p.negative_column) not in (None, ""):
            example["negative"] = _text(raw, p.negative_column, "negative", "task.negative_column")
        return example

    def text_of(self, example: dict[str, Any]) -> str:
        # The pair, not the anchor alone: one query with several relevant texts is several examples, not duplicates.
        return example["anchor"] if "positive" not in example else f"{example['anchor']} [SEP] {example['positive']}"

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        return {k: transform(v) if k in ("anchor", "positive", "negative") else v for k, v in example.items()}

    def label_key(self, example: dict[str, Any]) -> str:
        return example.get("label", "all")

    def labels_of(self, example: dict[str, Any]) -> list[str]:
        return [example["label"]] if "label" in example else []

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        if not examples:
            return []
        fields = [f for f in ("anchor", "positive", "negative") if all(f in e for e in examples)]
        lengths = [[len(ids) for ids in tokenizer([e[f] for e in examples])["input_ids"]] for f in fields]
        return [max(per) for per in zip(*lengths, strict=True)]

    def training_rows(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """(anchor, positive[, negative]) rows; labelled texts are paired with another text of their label, drawn
        with training.seed. Labelled rows with distinct_label_batches also carry `label`: [anchor label id, hard
        negative's label id or -1], which the batch sampler (tasks/_embedding_batches.py) keeps apart."""
        if self.params.data == "pairs":
            rows = [{k: e[k] for k in ("anchor", "positive", "negative") if k in e} for e in examples]
            labels: list[str] = []
        else:
            rows, labels = self._labelled_pairs(examples)
        if not all("negative" in r for r in rows):  # one column set for all rows: negatives only if every row has one
            rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in rows]
        if self.params.data == "labels" and self.params.distinct_label_batches:
            label_id = {lab: i for i, lab in enumerate(sorted({e["label"] for e in examples}))}
            label_of_text = {e["anchor"]: label_id[e["label"]] for e in examples}
            for row, lab in zip(rows, labels, strict=True):
                row["label"] = [label_id[lab], label_of_text.get(row.get("negative", ""), -1)]
        return rows

    def _labelled_pairs(self, examples: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str]]:
        """Each text with another text of its label (drawn with training.seed), and each pair's label."""
        by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in examples:
            by_label[e["label"]].append(e)
        rng = random.Random(self.seed)
        rows, labels = [], []
        for e in examples:
            others = [o for o in by_label[e["label"]] if o is not e]
            if others:  # a label seen once gives no pair
                row = {"anchor": e["anchor"], "positive": rng.choice(others)["anchor"]}
                rows.append({**row, "negative": e["negative"]} if "negative" in e else row)
                labels.append(e["label"])
        return rows, labels

    # ---- model ------------------------------------------------------------------------------------------
    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from sentence_transformers import SentenceTransformer

        load_kwargs.pop("pad_token_id", None)
        trust = bool(load_kwargs.pop("trust_remote_code", False))
        revision = load_kwargs.pop("revision", None)
        # A plain transformers folder (no modules.json) gets mean pooling, sentence-transformers' default.
        model = SentenceTransformer(model_path, device="cpu", trust_remote_code=trust, revision=revision,
                                    model_kwargs=load_kwargs or None, local_files_only=True)
        if self.max_length:
            model.max_seq_length = self.max_length
        return model

    def head_info(self, model: Any) -> HeadInfo:
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=())

    def apply_method(self, method: Any, model: Any, head: HeadInfo) -> Any:
        # The method adapts the transformers encoder inside; pooling and normalisation have nothing to train.
        # (`auto_model` is a read-only property over `model`; assigning it would only register a second module.)
        model[0].model = method.apply(model[0].model, head)
        return model

    def before_training(self, model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], seed: int,
                        run_dir: Path) -> dict[str, Any]:
        facts: dict[str, Any] = {"reference_spearman_before": self.reference_score(model)}
        if self.params.hard_negatives:
            from tuneforge.tasks._embedding_training import mine_negatives

            facts["hard_negatives"] = mine_negatives(model, splits["train"], self.params)
        return facts

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        rows = self.training_rows(examples)
        if not rows:
            from tuneforge.errors import DataError

            raise DataError(f"no (anchor, positive) pair can be made from a split of {len(examples)} labelled texts: "
                            "every label occurs in it once", fix="give more texts per label, or raise "
                            "data.split.validation (each label needs two texts in a split)")
        return Dataset.from_list(rows)

    def collator(self, tokenizer: Any) -> Any:
        return None  # sentence-transformers' own collator tokenises with the model

    def trainer_spec(self, cfg: Any) -> Any:
        from tuneforge.tasks._embedding_training import trainer_spec

        return trainer_spec(self.params)

    def save_trained(self, model: Any, method: Any, out_dir: Path) -> None:
        from tuneforge.tasks._embedding_training import save_sentence_transformer

        save_sentence_transformer(model, method, out_dir)

    def load_trained(self, model_dir: Path, device: str) -> Any:
        import json

        from sentence_transformers import SentenceTransformer

        from tuneforge.tasks._embedding_training import ADAPTER_MODULE

        # Adapter runs name tuneforge's own module class, which sentence-transformers imports only when trusted.
        ours = ADAPTER_MODULE in {m["type"] for m in json.loads((model_dir / "modules.json").read_text())}
        remote = ours or bool(json.loads((model_dir / "tuneforge.json").read_text()).get("trust_remote_code"))
        return SentenceTransformer(str(model_dir), device=device, local_files_only=True, trust_remote_code=remote)

    # ---- scoring ------------------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        return []  # validation reports the loss only

    def compute_metrics(self, labels: list[str]) -> Any:
        return None

    def retrieval_setup(self, examples: list[dict[str, Any]]) -> tuple[list[str], list[str], list[set[int]], bool]:
        """(queries, corpus, relevant corpus ids per query, leave-one-out). Pairs: the queries are the distinct
        anchors, the corpus every positive and negative of the split. Labels: each text queries all the others."""
        if self.params.data == "labels":
            texts = [e["anchor"] for e in examples]
            by_label: dict[str, set[int]] = defaultdict(set)
            for i, e in enumerate(examples):
                by_label[e["label"]].add(i)
            return texts, texts, [by_label[e["label"]] - {i} for i, e in enumerate(examples)], True
        corpus_ids: dict[str, int] = {}
        relevant: dict[str, set[int]] = defaultdict(set)
        for e in examples:
            relevant[e["anchor"]].add(corpus_ids.setdefault(e["positive"], len(corpus_ids)))
            if "negative" in e:
                corpus_ids.setdefault(e["negative"], len(corpus_ids))
        queries = list(relevant)
        return queries, list(corpus_ids), [relevant[q] for q in queries], False

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        import numpy as np

        from tuneforge.evaluation.ranking import DEPTH, per_query_scores, summarise, top_k

        queries, corpus, relevant, leave_one_out = self.retrieval_setup(examples)
        q_vecs = _vectors(model, queries, batch_size)
        c_vecs = q_vecs if leave_one_out else _vectors(model, corpus, batch_size)
        exclude = np.arange(len(queries)) if leave_one_out else None
        ranked = top_k(q_vecs, c_vecs, DEPTH, exclude)
        keep = [i for i, rel in enumerate(relevant) if rel]  # a label seen once in the split has nothing to find
        queries, ranked, relevant = [queries[i] for i in keep], ranked[keep], [relevant[i] for i in keep]
        per_query = per_query_scores(ranked, relevant)
        metrics, intervals = summarise(per_query)
        metrics["reference_spearman"] = self.reference_score(model, batch_size)
        return EvalResult(metrics, predictions=per_query[self.primary_metric].tolist(),
                          references=list(range(len(queries))),
                          extra={"ci": intervals, "examples": _sample_hits(queries, corpus, ranked, relevant)})

    def reference_score(self, model: Any, batch_size: int = 64) -> float:
        """Spearman correlation with the general-English similarity judgements shipped with tuneforge."""
        from tuneforge.evaluation.ranking import read_reference_pairs, reference_spearman

        pairs = read_reference_pairs()
        first = _vectors(model, [str(p["sentence1"]) for p in pairs], batch_size)
        second = _vectors(model, [str(p["sentence2"]) for p in pairs], batch_size)
        return reference_spearman(first, second, [float(p["score"]) for p in pairs])  # type: ignore[arg-type]

    def embed(self, model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> Any:
        return _vectors(model, texts, batch_size)

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        plain = [t if isinstance(t, str) else t[0] for t in texts]
        return [{"embedding": [round(float(x), 6) for x in vec]} for vec in _vectors(model, plain, batch_size)]

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        if "base_model" not in names:
            return {}
        base = self.build_model(base_model_path, labels)
        return {"base_model": self.evaluate(base, tokenizer, splits["test"], labels, max_length, 64)}
