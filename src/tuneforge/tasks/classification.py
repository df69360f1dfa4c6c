"""Sequence classification (single- or multi-label) of a text or a text pair."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from tuneforge.evaluation.compare_types import Comparison
from tuneforge.evaluation.metrics import classification_metrics, multilabel_metrics
from tuneforge.lazy_torch import inference_mode
from tuneforge.methods.base import HeadInfo
from tuneforge.models.pooling import declares_mean_pooling, use_mean_pooling
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams

if TYPE_CHECKING:
    import torch

HEAD_NAMES = ("classifier", "score", "pre_classifier")


class ClassificationParams(TaskParams):
    name: Literal["classification"] = "classification"
    multi_label: bool = Field(False, description="Each example may carry several labels.")
    label_separator: str = Field("|", description="Separates labels in one string (multi-label only).")
    threshold: float = Field(0.5, gt=0, lt=1, description="Probability above which a label is predicted.")
    pooling: Literal["auto", "model", "mean"] = Field(
        "auto", description="Sentence vector for the head: 'model' = the architecture's own ([CLS] for BERT); "
                            "'mean' = masked mean of token states; 'auto' = mean when the model was trained so.")


def _text_field(raw: dict[str, Any], column: str, role: str) -> str:
    if column not in raw:
        found = ", ".join(map(str, raw)) or "none"
        raise RecordError(f"missing column '{column}' (columns found: {found})",
                          fix=f"add '{column}' to every record, or set data.columns.{role} to the column "
                              f"that holds the {role.replace('_', ' ')}")
    value = raw[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"empty {role.replace('_', ' ')} in column '{column}'",
                          fix="fill it in or remove the record (--skip-invalid drops such records)")
    if not isinstance(value, str):
        raise RecordError(f"{role} must be a string, got {type(value).__name__} {value!r}",
                          fix=f"put the {role} in column '{column}' as text")
    return value


def _sample_predictions(examples: list[dict[str, Any]], refs: np.ndarray, preds: np.ndarray, labels: list[str],
                        n: int = 6) -> list[dict[str, Any]]:
    """A few test predictions for the report: the first n mistakes and the first n correct ones."""
    wrong = [i for i in range(len(examples)) if refs[i] != preds[i]][:n]
    right = [i for i in range(len(examples)) if refs[i] == preds[i]][:n]
    return [{"text": examples[i]["text"], "reference": labels[int(refs[i])], "predicted": labels[int(preds[i])]}
            for i in wrong + right]


@TASKS.register
class Classification(Task):
    name = "classification"
    Params = ClassificationParams
    primary_metric: ClassVar[str] = "macro_f1"
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    pipeline_tag: ClassVar[str | None] = "text-classification"
    min_labels: ClassVar[int] = 2
    supports_dry_run: ClassVar[bool] = True
    augmentable: ClassVar[bool] = True
    comparison: ClassVar[Any] = Comparison(
        "tuneforge.evaluation.compare_classification:classification_entrants", "macro_f1", True)
    baseline_names: ClassVar[tuple[str, ...]] = ("linear_probe", "zero_shot")
    params: ClassificationParams

    # ---- data -------------------------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        example: dict[str, Any] = {"text": _text_field(raw, columns.text, "text")}
        if columns.text_pair:
            example["text_pair"] = _text_field(raw, columns.text_pair, "text_pair")
        if columns.label not in raw:
            found = ", ".join(map(str, raw))
            raise RecordError(f"missing column '{columns.label}' (columns found: {found})",
                              fix="add a label to every record, or set data.columns.label to the label column")
        value = raw[columns.label]
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            raise RecordError(f"empty label in column '{columns.label}'",
                              fix="label the record or remove it (--skip-invalid drops such records)")
        if self.params.multi_label:
            parts = value if isinstance(value, list) else str(value).split(self.params.label_separator)
            labels = sorted({str(p).strip() for p in parts if str(p).strip()})
        else:
            if isinstance(value, list | dict):
                raise RecordError(f"label is a {type(value).__name__} ({value!r}) but the task is single-label",
                                  fix="set task.multi_label: true, or give one label per record")
            labels = [str(value).strip()]
        if known_labels is not None:
            unknown = [lab for lab in labels if lab not in known_labels]
            if unknown:
                shown = ", ".join(list(known_labels)[:12]) + (" ..." if len(known_labels) > 12 else "")
                raise RecordError(f"unknown label {unknown[0]!r}",
                                  fix=f"use one of data.labels ({shown}), or add it to data.labels")
        example["label"] = labels if self.params.multi_label else labels[0]
        return example

    def text_of(self, example: dict[str, Any]) -> str:
        pair = example.get("text_pair")
        return example["text"] if pair is None else f"{example['text']} [SEP] {pair}"

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        out = dict(example, text=transform(example["text"]))
        if out.get("text_pair") is not None:
            out["text_pair"] = transform(out["text_pair"])
        return out

    def label_key(self, example: dict[str, Any]) -> str:
        label = example["label"]
        return "|".join(label) if isinstance(label, list) else label

    def labels_of(self, example: dict[str, Any]) -> list[str]:
        label = example["label"]
        return list(label) if isinstance(label, list) else [label]

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        if not examples:
            return []
        pairs = [e.get("text_pair") for e in examples]
        enc = tokenizer([e["text"] for e in examples], pairs if any(pairs) else None)
        return [len(ids) for ids in enc["input_ids"]]

    # ---- model ------------------------------------------------------------------------------------------
    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from transformers import AutoModelForSequenceClassification

        from tuneforge.models.loading import from_pretrained

        pad_token_id = load_kwargs.pop("pad_token_id", None)
        model = from_pretrained(
            AutoModelForSequenceClassification, model_path, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
            problem_type="multi_label_classification" if self.params.multi_label else "single_label_classification",
            **load_kwargs)
        if model.config.pad_token_id is None and pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
        pooling = self.params.pooling
        if pooling == "mean" or (pooling == "auto" and declares_mean_pooling(model_path)):
            use_mean_pooling(model)
        return model

    def head_info(self, model: Any) -> HeadInfo:
        heads = tuple(name for name, _ in model.named_children() if name in HEAD_NAMES)
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=heads)

    def _targets(self, examples: list[dict[str, Any]], labels: list[str]) -> list[Any]:
        index = {lab: i for i, lab in enumerate(labels)}
        if self.params.multi_label:
            return [[1.0 if lab in set(e["label"]) else 0.0 for lab in labels] for e in examples]
        return [index[e["label"]] for e in examples]

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        pairs = [e.get("text_pair") for e in examples]
        enc = tokenizer([e["text"] for e in examples], pairs if any(pairs) else None, truncation=True,
                        max_length=max_length)
        columns = dict(enc)
        columns["labels"] = self._targets(examples, labels)
        return Dataset.from_dict(columns)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def loss_weights(self, examples: list[dict[str, Any]], labels: list[str]) -> torch.Tensor | None:
        import torch

        counts = Counter(lab for e in examples for lab in self.labels_of(e))
        freq = torch.tensor([max(counts.get(lab, 0), 1) for lab in labels], dtype=torch.float32)
        weights = freq.sum() / (len(labels) * freq)  # "balanced" weighting, as scikit-learn's
        return weights / weights.mean()

    def _score(self, logits: np.ndarray, refs: np.ndarray, labels: list[str]) -> tuple[dict, dict, np.ndarray]:
        if self.params.multi_label:
            preds = (1 / (1 + np.exp(-logits)) > self.params.threshold).astype(int)
            metrics, per_class = multilabel_metrics(refs.astype(int), preds, labels)
            return metrics, per_class, preds
        preds = logits.argmax(-1)
        metrics, per_class = classification_metrics(refs.tolist(), preds.tolist(), labels)
        return metrics, per_class, preds

    def metric_names(self) -> list[str]:
        if self.params.multi_label:
            return ["subset_accuracy", "micro_f1", "macro_f1"]
        return ["accuracy", "macro_f1", "weighted_f1"]

    def compute_metrics(self, labels: list[str]) -> Callable[[Any], dict[str, float]]:
        def compute(eval_pred: Any) -> dict[str, float]:
            logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
            return self._score(np.asarray(logits), np.asarray(eval_pred.label_ids), labels)[0]

        return compute

    @inference_mode
    def logits(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str | None] | None,
               max_length: int, batch_size: int) -> np.ndarray:
        model.eval()
        device = next(model.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch_pairs = [pairs[i] for i in idx] if pairs and any(pairs) else None
            enc = tokenizer([texts[i] for i in idx], batch_pairs, truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt").to(device)
            logits = model(**enc).logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        logits = self.logits(model, tokenizer, [e["text"] for e in examples],
                             [e.get("text_pair") for e in examples], max_length, batch_size)
        refs = np.asarray(self._targets(examples, labels))
        metrics, per_class, preds = self._score(logits, refs, labels)
        extra = {} if self.params.multi_label else {"examples": _sample_predictions(examples, refs, preds, labels)}
        return EvalResult(metrics, per_class, preds.tolist(), refs.tolist(), extra)

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        import torch

        plain = [t if isinstance(t, str) else t[0] for t in texts]
        pairs = [None if isinstance(t, str) else t[1] for t in texts]
        logits = torch.from_numpy(self.logits(model, tokenizer, plain, pairs, max_length, batch_size))
        if self.params.multi_label:
            probs = torch.sigmoid(logits)
            return [{"labels": [labels[j] for j in range(len(labels)) if p[j] > self.params.threshold],
                     "scores": {labels[j]: round(float(p[j]), 4) for j in range(len(labels))}} for p in probs]
        probs = torch.softmax(logits, dim=-1)
        out = []
        for p in probs:
            top = torch.topk(p, k=min(5, len(labels)))
            out.append({"label": labels[int(top.indices[0])], "score": round(float(top.values[0]), 4),
                        "top": {labels[int(i)]: round(float(v), 4) for v, i in zip(top.values, top.indices,
                                                                                  strict=True)}})
        return out

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        from tuneforge.evaluation.baselines import fit_linear_probe, label_description, zero_shot_predict
        from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings

        if self.params.multi_label or not names:
            return {}
        encoder = load_encoder(base_model_path)
        index = {lab: i for i, lab in enumerate(labels)}
        embed = {name: sentence_embeddings(encoder, tokenizer, [self.text_of(e) for e in exs], max_length)
                 for name, exs in splits.items()}
        y = {name: np.array([index[e["label"]] for e in exs]) for name, exs in splits.items()}
        results: dict[str, EvalResult] = {}
        if "linear_probe" in names:
            probe = fit_linear_probe(embed["train"], y["train"], embed["validation"], y["validation"])
            pred = probe.predict(embed["test"])
            results["linear_probe"] = EvalResult(*classification_metrics(y["test"].tolist(), pred.tolist(), labels),
                                                 pred.tolist(), y["test"].tolist())
        if "zero_shot" in names:
            label_vecs = sentence_embeddings(encoder, tokenizer, [label_description(lab) for lab in labels])
            pred = zero_shot_predict(embed["test"], label_vecs)
            results["zero_shot"] = EvalResult(*classification_metrics(y["test"].tolist(), pred.tolist(), labels),
                                              pred.tolist(), y["test"].tolist())
        return results

    def plots(self, result: EvalResult, labels: list[str], out_dir: Path) -> list[Path]:
        from tuneforge.evaluation.plots import confusion_matrix_png, per_class_f1_png

        paths = [per_class_f1_png(result.per_class, out_dir / "per_class_f1.png")]
        if not self.params.multi_label:
            paths.append(confusion_matrix_png(result.references, result.predictions, labels,
                                              out_dir / "confusion_matrix.png"))
        return paths
