"""Token classification (NER): word-level IOB tags, sub-word label alignment, entity-level scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from tuneforge.errors import DataError
from tuneforge.evaluation.compare_types import Comparison
from tuneforge.evaluation.metrics import entity_metrics
from tuneforge.lazy_torch import inference_mode
from tuneforge.methods.base import HeadInfo
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams, source_of

IGNORE = -100


class TokenClassificationParams(TaskParams):
    name: Literal["token_classification"] = "token_classification"
    label_all_subwords: bool = Field(False, description="Train every sub-word (I- tag), not only the first.")
    prior_bias: bool = Field(True, description="Start the new head's bias at the log frequency of each tag in the "
                                               "training data (O-heavy NER sets: keeps LoRA from collapsing to all-O).")


def normalize_iob(tags: list[str]) -> list[str]:
    """IOB1 (I- may open an entity) and IOB2 both become IOB2: an I-X not continuing an X becomes B-X."""
    out: list[str] = []
    prev_type = None
    for tag in tags:
        prefix, _, typ = tag.partition("-")
        if prefix == "I" and prev_type != typ:
            tag = f"B-{typ}"
        out.append(tag)
        prev_type = typ if prefix in ("B", "I") else None
    return out


def tag_names(types: list[str]) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def tag_ids(example: dict[str, Any], index: dict[str, int]) -> list[int]:
    """The example's tags as ids; a tag outside the run's labels is an error naming the example's file:line (it
    used to become O silently, training the model that the entity is no entity)."""
    try:
        return [index[t] for t in example["tags"]]
    except KeyError:
        pos, tag = next((i, t) for i, t in enumerate(example["tags"]) if t not in index)
        types = sorted({t[2:] for t in index if t != "O"})
        file, line = source_of(example)
        raise DataError(f"tag {tag!r} (token {pos + 1}, {example['tokens'][pos]!r}) is not among the run's entity "
                        f"types ({', '.join(types) or 'none'})", file=file, line=line,
                        fix="add its type to data.labels, or correct the tag") from None


@TASKS.register
class TokenClassification(Task):
    name = "token_classification"
    Params = TokenClassificationParams
    primary_metric: ClassVar[str] = "f1"
    peft_task_type: ClassVar[str] = "TOKEN_CLS"
    pipeline_tag: ClassVar[str | None] = "token-classification"
    default_format: ClassVar[str | None] = "conll"
    supports_dry_run: ClassVar[bool] = True
    comparison: ClassVar[Any] = Comparison(
        "tuneforge.evaluation.compare_token_classification:token_classification_entrants", "f1", True)
    baseline_names: ClassVar[tuple[str, ...]] = ("linear_probe",)
    per_token_outputs: ClassVar[bool] = True
    params: TokenClassificationParams

    # ---- data -------------------------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        for col, role in ((columns.tokens, "tokens"), (columns.tags, "tags")):
            if col not in raw:
                raise RecordError(f"missing column '{col}' (columns found: {', '.join(map(str, raw))})",
                                  fix=f"add '{col}' (a list) to every record, or set data.columns.{role}")
        tokens, tags = raw[columns.tokens], raw[columns.tags]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise RecordError("tokens and tags must be lists", fix='e.g. {"tokens": ["Paris"], "tags": ["B-LOC"]}')
        if not tokens:
            raise RecordError("empty token list", fix="remove the record (--skip-invalid drops such records)")
        if len(tokens) != len(tags):
            raise RecordError(f"{len(tokens)} tokens but {len(tags)} tags",
                              fix="give exactly one tag per token")
        tokens = [str(t) for t in tokens]
        if any(not t.strip() for t in tokens):
            raise RecordError("a token is empty or whitespace", fix="remove empty tokens and their tags")
        tags = [str(t).strip() for t in tags]
        # A CoNLL reader's record knows each token's line: a bad tag then names its own line.
        token_lines = getattr(raw, "token_lines", None) or [None] * len(tags)
        for tag, line in zip(tags, token_lines, strict=True):
            prefix, dash, typ = tag.partition("-")
            if tag != "O" and not (prefix in ("B", "I") and dash and typ):
                raise RecordError(f"tag {tag!r} is not IOB (O, B-TYPE or I-TYPE)",
                                  fix="convert the tags to IOB1/IOB2 (e.g. B-PER, I-PER, O)", line=line)
            if known_labels is not None and tag != "O" and typ not in known_labels:
                raise RecordError(f"unknown entity type {typ!r} in tag {tag!r}",
                                  fix=f"use one of data.labels ({', '.join(known_labels)}) or add it there", line=line)
        return {"tokens": tokens, "tags": normalize_iob(tags)}

    def text_of(self, example: dict[str, Any]) -> str:
        return " ".join(example["tokens"])

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        # Transform each token on its own so tokens and tags stay aligned; a token never disappears.
        return dict(example, tokens=[transform(t) or t for t in example["tokens"]])

    def label_key(self, example: dict[str, Any]) -> str:
        # Stratify by the entity types present (sorted): keeps rare types in every split.
        types = sorted({t[2:] for t in example["tags"] if t != "O"})
        return "|".join(types) if types else "O"

    def conflict_key(self, example: dict[str, Any]) -> str:
        return " ".join(example["tags"])

    def labels_of(self, example: dict[str, Any]) -> list[str]:
        return [t[2:] for t in example["tags"] if t.startswith("B-")]

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        if not examples:
            return []
        enc = tokenizer([e["tokens"] for e in examples], is_split_into_words=True)
        return [len(ids) for ids in enc["input_ids"]]

    # ---- model ------------------------------------------------------------------------------------------
    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from transformers import AutoModelForTokenClassification

        from tuneforge.models.loading import from_pretrained

        pad_token_id = load_kwargs.pop("pad_token_id", None)
        tags = tag_names(labels)
        model = from_pretrained(AutoModelForTokenClassification, model_path, num_labels=len(tags),
                                id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
                                **load_kwargs)
        if model.config.pad_token_id is None and pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
        return model

    def head_info(self, model: Any) -> HeadInfo:
        heads = tuple(name for name, _ in model.named_children() if name in ("classifier", "score"))
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=heads)

    def before_training(self, model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], seed: int,
                        run_dir: Path) -> dict[str, Any]:
        """Set the fresh head's bias to the training tags' log frequencies (before the method wraps the model).

        Why: a zero bias predicts all 13 tags equally, so the first gradients on every token say "more O". Under
        LoRA (lr 1e-3) the adapters answer that faster than the bias can (the bias moves ~lr per step, the log
        prior is ~5 away): they add one large constant vector to every token, the final LayerNorm then maps all
        tokens to the same features, and the model is stuck at all-O (WNUT-17: F1 0.0, features' cosine to their
        mean 0.99999). Starting at the prior removes that common push; only the discriminative signal is left."""
        if not self.params.prior_bias:
            return {}
        share = set_prior_bias(model, self.head_info(model), [e["tags"] for e in splits["train"]])
        return {} if share is None else {"head_bias_prior": True, "entity_tag_share": round(share, 4)}

    def _align(self, word_ids: list[int | None], tag_ids: list[int], tags: list[str]) -> list[int]:
        out, prev = [], None
        for word in word_ids:
            if word is None:
                out.append(IGNORE)
            elif word != prev:
                out.append(tag_ids[word])
            elif self.params.label_all_subwords:
                tag = tags[tag_ids[word]]
                out.append(tags.index("I-" + tag[2:]) if tag != "O" else tag_ids[word])
            else:
                out.append(IGNORE)
            prev = word
        return out

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        tags = tag_names(labels)
        index = {t: i for i, t in enumerate(tags)}
        enc = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, truncation=True,
                        max_length=max_length)
        columns = {k: list(v) for k, v in enc.items()}
        columns["labels"] = [self._align(enc.word_ids(i), tag_ids(e, index), tags) for i, e in enumerate(examples)]
        return Dataset.from_dict(columns)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def input_fields(self, columns: Any) -> tuple[str, str | None]:
        return columns.tokens, None

    def metric_names(self) -> list[str]:
        return ["precision", "recall", "f1", "macro_f1", "token_accuracy"]

    def compute_metrics(self, labels: list[str]) -> Callable[[Any], dict[str, float]]:
        tags = tag_names(labels)

        def compute(eval_pred: Any) -> dict[str, float]:
            logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
            preds = np.asarray(logits).argmax(-1)
            refs = np.asarray(eval_pred.label_ids)
            true_seqs, pred_seqs = [], []
            for p_row, r_row in zip(preds, refs, strict=True):
                keep = r_row != IGNORE
                true_seqs.append([tags[i] for i in r_row[keep]])
                pred_seqs.append([tags[i] for i in p_row[keep]])
            return entity_metrics(true_seqs, pred_seqs)[0]

        return compute

    @inference_mode
    def tag(self, model: Any, tokenizer: Any, sentences: list[list[str]], labels: list[str], max_length: int,
            batch_size: int) -> list[list[str]]:
        """Word-level predicted tags (first sub-word); words cut off by truncation are tagged O."""
        tags = tag_names(labels)
        model.eval()
        device = next(model.parameters()).device
        out: list[list[str]] = [["O"] * len(s) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([sentences[i] for i in idx], is_split_into_words=True, truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
            pred = model(**{k: v.to(device) for k, v in enc.items()}).logits.argmax(-1).cpu().numpy()
            for row, i in enumerate(idx):
                seen: set[int] = set()
                for pos, word in enumerate(enc.word_ids(row)):
                    if word is not None and word not in seen:
                        seen.add(word)
                        out[i][word] = tags[int(pred[row, pos])]
        return [_repair(seq) for seq in out]

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        preds = self.tag(model, tokenizer, [e["tokens"] for e in examples], labels, max_length, batch_size)
        refs = [e["tags"] for e in examples]
        metrics, per_type = entity_metrics(refs, preds)
        return EvalResult(metrics, per_type, preds, refs)

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        from tuneforge.evaluation.metrics import entity_spans

        sentences = [t.split() if isinstance(t, str) else list(t) for t in texts]
        preds = self.tag(model, tokenizer, sentences, labels, max_length, batch_size)
        return [{"tokens": s, "tags": p,
                 "entities": [{"type": typ, "text": " ".join(s[a:b]), "start": a, "end": b}
                              for typ, a, b in sorted(entity_spans(p), key=lambda x: x[1])]}
                for s, p in zip(sentences, preds, strict=True)]

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """Linear probe on frozen first-sub-word features (zero-shot has no meaning for NER tags)."""
        from tuneforge.evaluation.baselines import fit_linear_probe
        from tuneforge.evaluation.embeddings import load_encoder, word_embeddings

        if "linear_probe" not in names:
            return {}
        tags = tag_names(labels)
        index = {t: i for i, t in enumerate(tags)}
        encoder = load_encoder(base_model_path)
        feats = {n: word_embeddings(encoder, tokenizer, [e["tokens"] for e in splits[n]], max_length)
                 for n in ("train", "validation", "test")}
        ys = {n: [np.array(tag_ids(e, index)) for e in splits[n]] for n in feats}
        probe = fit_linear_probe(np.concatenate(feats["train"]), np.concatenate(ys["train"]),
                                 np.concatenate(feats["validation"]), np.concatenate(ys["validation"]))
        preds = [_repair([tags[i] for i in probe.predict(f)]) for f in feats["test"]]
        metrics, per_type = entity_metrics([e["tags"] for e in splits["test"]], preds)
        return {"linear_probe": EvalResult(metrics, per_type)}

    def plots(self, result: EvalResult, labels: list[str], out_dir: Path) -> list[Path]:
        from tuneforge.evaluation.plots import per_class_f1_png

        return [per_class_f1_png(result.per_class, out_dir / "per_type_f1.png", "Entity F1 per type")]


def set_prior_bias(model: Any, head: HeadInfo, tag_seqs: list[list[str]]) -> float | None:
    """Bias of the head's output layer := log of add-one-smoothed tag frequencies (unseen tags stay finite).
    Returns the share of non-O tags, or None when the head has no bias to set."""
    import torch

    with torch.no_grad():
        return _set_prior_bias(model, head, tag_seqs)


def _set_prior_bias(model: Any, head: HeadInfo, tag_seqs: list[list[str]]) -> float | None:
    import torch

    id2label = {int(i): t for i, t in model.config.id2label.items()}
    layer = getattr(model, head.head_modules[0], None) if head.head_modules else None
    bias = getattr(layer, "bias", None)
    if bias is None or bias.shape[0] != len(id2label):
        return None
    index = {t: i for i, t in id2label.items()}
    counts = torch.ones(len(id2label), dtype=torch.float64)
    for seq in tag_seqs:
        for tag in seq:
            if tag in index:
                counts[index[tag]] += 1
    bias.copy_(torch.log(counts / counts.sum()).to(bias.dtype))
    o_count = counts[index["O"]] - 1 if "O" in index else 0
    return float(1 - o_count / max(1, counts.sum() - len(counts)))


def _repair(tags: list[str]) -> list[str]:
    """Make predicted tags valid IOB2 (a stray I-X opens an entity), as seqeval reads them."""
    return normalize_iob(tags)
