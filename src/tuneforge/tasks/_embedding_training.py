"""The heavy half of the embedding task (imported only when a run trains or saves): sentence-transformers' trainer
with tuneforge's checkpoints, the loss, hard-negative mining, and saving the trained model as a sentence-transformers
folder whatever the method."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.modules.transformer import Transformer
from sentence_transformers.base.sampler import BatchSamplers

from tuneforge.training.spec import TrainerSpec

STATE_FILE = "tuneforge_state.safetensors"
ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "tuneforge_adapter.json"
ADAPTER_MODULE = "tuneforge.tasks._embedding_training.AdapterTransformer"  # its name in modules.json


class EmbeddingTrainer(SentenceTransformerTrainer):
    """Checkpoints hold the whole in-memory state dict, so restoring the best step (or resuming) gives back exactly
    the model that was trained, PEFT-wrapped or with adapters inserted, which a reload from files would not."""

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        from safetensors.torch import save_model

        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(out / STATE_FILE))
        torch.save(self.args, out / "training_args.bin")

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        from safetensors.torch import load_model

        load_model(self.model, str(Path(checkpoint_path) / STATE_FILE))


def trainer_spec(params: Any) -> TrainerSpec:
    def loss(model: SentenceTransformer) -> torch.nn.Module:
        from sentence_transformers.sentence_transformer import losses

        if params.loss == "cached_mnrl":
            inner = losses.CachedMultipleNegativesRankingLoss(model, scale=params.scale,
                                                              mini_batch_size=params.mini_batch_size)
        else:
            inner = losses.MultipleNegativesRankingLoss(model, scale=params.scale)
        if params.matryoshka_dims:
            return losses.MatryoshkaLoss(model, inner, matryoshka_dims=sorted(params.matryoshka_dims, reverse=True))
        return inner

    sampler: Any = BatchSamplers.NO_DUPLICATES
    if params.data == "labels" and params.distinct_label_batches:
        from tuneforge.tasks._embedding_batches import DistinctLabelBatchSampler

        sampler = DistinctLabelBatchSampler  # no in-batch negative of the anchor's own label
    return TrainerSpec(base=EmbeddingTrainer, args_class=SentenceTransformerTrainingArguments,
                       args_extra={"batch_sampler": sampler, "prediction_loss_only": True},
                       init_extra={"loss": loss})


def mine_negatives(model: SentenceTransformer, train: list[dict[str, Any]], params: Any) -> dict[str, Any]:
    """One hard negative per training example, found with the base model, written into the examples.

    Pairs: sentence-transformers' miner over the training positives, keeping only candidates that score at least
    `hard_negative_margin` (relative) below the positive. Labelled data: the most similar text of another label,
    which cannot be a false negative."""
    if params.data == "labels":
        texts = [e["anchor"] for e in train]
        vecs = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        labels = np.array([e["label"] for e in train])
        mined = 0
        for start in range(0, len(texts), 512):
            scores = vecs[start:start + 512] @ vecs.T
            scores[labels[start:start + 512, None] == labels[None, :]] = -np.inf
            for row, best in enumerate(scores.argmax(axis=1)):
                if np.isfinite(scores[row, best]):
                    train[start + row]["negative"] = texts[int(best)]
                    mined += 1
        return {"mined": mined, "of": len(train)}
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    pairs = [e for e in train if "negative" not in e]
    if not pairs:
        return {"mined": 0, "of": len(train)}
    found = mine_hard_negatives(Dataset.from_list([{"anchor": e["anchor"], "positive": e["positive"]} for e in pairs]),
                                model, num_negatives=1, relative_margin=params.hard_negative_margin,
                                sampling_strategy="top", output_format="triplet", verbose=False)
    by_pair = {(r["anchor"], r["positive"]): r["negative"] for r in found}
    mined = 0
    for e in pairs:
        negative = by_pair.get((e["anchor"], e["positive"]))
        if negative is not None:
            e["negative"] = negative
            mined += 1
    return {"mined": mined, "of": len(train)}


class AdapterTransformer(Transformer):
    """sentence-transformers' Transformer module with tuneforge's bottleneck adapters, so a run trained with the
    adapter method loads as `SentenceTransformer(folder, trust_remote_code=True)` (the class lives in tuneforge,
    outside sentence-transformers' namespace, which is what that flag allows)."""

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        from safetensors.torch import save_file

        super().save(output_path, *args, safe_serialization=safe_serialization, **kwargs)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items() if ".adapter." in k}
        save_file(state, str(Path(output_path) / ADAPTER_FILE))
        Path(output_path, ADAPTER_CONFIG).write_text(json.dumps(self.tuneforge_adapter, indent=2))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> AdapterTransformer:
        from tuneforge.methods.adapter import AdapterParams, insert_adapters
        from tuneforge.methods.base import load_partial

        module = super().load(model_name_or_path, subfolder=subfolder, **kwargs)
        folder = Path(model_name_or_path) / subfolder
        params = json.loads((folder / ADAPTER_CONFIG).read_text())
        insert_adapters(module.model, AdapterParams.model_validate(params))
        load_partial(module.model, folder / ADAPTER_FILE)
        module.tuneforge_adapter = params
        return module


def save_sentence_transformer(model: SentenceTransformer, method: Any, out_dir: Path) -> None:
    """A sentence-transformers folder of the trained model: LoRA/DoRA merged into the weights (a plain folder),
    bottleneck adapters kept as AdapterTransformer. A copy is saved, so the run's model stays as it trained."""
    clone = copy.deepcopy(model).cpu()
    encoder = clone[0]
    encoder.model = method.merge(encoder.model)
    if method.name == "adapter":
        encoder.__class__ = AdapterTransformer
        encoder.tuneforge_adapter = method.params.model_dump()
    clone.save(str(out_dir), create_model_card=False)
