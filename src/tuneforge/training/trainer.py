"""Build and run the transformers Trainer for a task: arguments from the config, tuneforge's sampler, callbacks,
atomic checkpoints and optional class weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tuneforge.config import RunConfig
from tuneforge.errors import ConfigError
from tuneforge.evaluation.stats import higher_is_better
from tuneforge.training.callbacks import GracefulStop, NanGuard, OverfitDetector, ResumableEarlyStopping, RichProgress
from tuneforge.training.regularizers import BaseModelReference, kl_to_base, parameter_groups
from tuneforge.training.sampler import SeededLengthGroupedSampler
from tuneforge.training.spec import TrainerSpec


class TuneforgeTrainerMixin:
    """What every tuneforge trainer adds to a transformers/TRL trainer: reproducible length-grouped batches,
    atomic checkpoints, correct loss scaling under gradient accumulation and optional class weights.

    Mixed in before the library class (`class X(TuneforgeTrainerMixin, DPOTrainer)`, see `trainer_class`), so TRL's
    trainers get the same behaviour as the plain Trainer without a second pipeline.
    """

    # Our losses (the models' own and the class-weighted one) are per-batch means: let the Trainer divide by the
    # accumulation steps. Left to itself it assumes models taking **kwargs already did, and gradients come out
    # gradient_accumulation_steps times too large.
    loss_is_scaled_for_ga = False

    args: Any
    state: Any
    train_dataset: Any

    def __init__(self, *args: Any, class_weights: torch.Tensor | None = None, group_by_length: bool = True,
                 kl_to_base: float = 0.0, backbone_lr_scale: float = 1.0, **kwargs: Any) -> None:
        self.class_weights = class_weights
        self.group_by_length = group_by_length
        self.kl_to_base = kl_to_base
        self.backbone_lr_scale = backbone_lr_scale
        self._staging: str | None = None
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._base_reference = BaseModelReference(self.model) if kl_to_base > 0 else None  # type: ignore[attr-defined]

    def create_optimizer(self, model: Any = None) -> Any:
        if self.backbone_lr_scale == 1.0 or getattr(self, "optimizer", None) is not None:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()  # type: ignore[misc]
        groups = parameter_groups(self.model, self.args.weight_decay, self.backbone_lr_scale,  # type: ignore[attr-defined]
                                  self.args.learning_rate)
        self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1,
                                           self.args.adam_beta2), eps=self.args.adam_epsilon, fused=True)
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or "input_ids" not in getattr(dataset, "column_names", []):
            return super()._get_train_sampler(train_dataset)  # type: ignore[misc]
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return SeededLengthGroupedSampler(lengths, self.args.train_batch_size, self.args.seed)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if self._base_reference is not None:
            outputs = model(**inputs)
            penalty = kl_to_base(outputs.logits, self._base_reference.logits(model, inputs), inputs["labels"])
            loss = outputs.loss + self.kl_to_base * penalty
            return (loss, outputs) if return_outputs else loss
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits
        weights = self.class_weights.to(logits.device, logits.dtype)
        if labels.dtype.is_floating_point:  # multi-label
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype),
                                                                         pos_weight=weights)
        else:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                                     weight=weights, ignore_index=-100)
        return (loss, outputs) if return_outputs else loss

    # ---- atomic checkpoints: write into a staging folder, then rename into place ---------------------------
    def _get_output_dir(self, trial: Any) -> str:
        return self._staging or super()._get_output_dir(trial)  # type: ignore[misc]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        final_root = self.args.output_dir
        staging = os.path.join(final_root, ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging, exist_ok=True)
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._staging = None
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.state.best_global_step:
            best = os.path.join(final_root, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
            self.state.best_model_checkpoint = best
            self.state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
        target = os.path.join(final_root, name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(os.path.join(staging, name), target)  # atomic on one filesystem
        shutil.rmtree(staging, ignore_errors=True)
        from transformers.trainer_utils import rotate_checkpoints

        rotate_checkpoints(output_dir=final_root, save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)


class TuneforgeTrainer(TuneforgeTrainerMixin, Trainer):
    """The transformers Trainer with tuneforge's behaviour (classification, NER, SFT)."""


def trainer_class(base: type) -> type:
    """A library trainer class (e.g. TRL's DPOTrainer) with tuneforge's behaviour mixed in."""
    if base is Trainer:
        return TuneforgeTrainer
    # A library trainer that states how its own loss is scaled under accumulation (GRPO: already scaled) knows best.
    own = next((c.__dict__["loss_is_scaled_for_ga"] for c in base.__mro__
                if c is not Trainer and "loss_is_scaled_for_ga" in c.__dict__), None)
    attrs = {} if own is None else {"loss_is_scaled_for_ga": own}
    return type(f"Tuneforge{base.__name__}", (TuneforgeTrainerMixin, base), attrs)


def training_arguments(cfg: RunConfig, output_dir: Path, metric: str, n_train: int,
                       loss_only: bool = False, spec: TrainerSpec | None = None) -> TrainingArguments:
    t = cfg.training
    steps_per_epoch = max(1, -(-n_train // (t.batch_size * t.gradient_accumulation_steps)))
    strategy = "steps" if t.eval_steps else "epoch"
    use_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
    if use_cpu and t.precision == "fp16":
        raise ConfigError("fp16 needs a GPU", key="training.precision", fix="use fp32 or bf16 on CPU")
    if t.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA GPU is available here", key="training.device", fix="use device: auto or cpu")
    bf16 = t.precision == "bf16" or (t.precision == "auto" and not use_cpu and torch.cuda.is_bf16_supported())
    spec = spec or TrainerSpec()
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate(),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        # Fused AdamW (transformers' default with torch >= 2.8; pinned so an older stack cannot silently lose it):
        # about 20% faster MiniLM steps on 2 CPU cores than the per-tensor loop.
        optim="adamw_torch_fused",
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps,
        save_steps=t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=t.restore_best,
        metric_for_best_model=metric,
        greater_is_better=higher_is_better(metric),
        logging_strategy="steps",
        logging_steps=max(1, min(t.eval_steps or steps_per_epoch, 10)),
        logging_nan_inf_filter=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=use_cpu,
        bf16=bf16,
        fp16=t.precision == "fp16",
        # Always explicit: TRL's configs default to checkpointing on (about 20% slower), tuneforge's to off.
        activation_checkpointing=t.gradient_checkpointing,
        train_sampling_strategy="random",  # length grouping is ours (seeded per epoch), see sampler.py
        save_only_model=False,
        prediction_loss_only=loss_only,
    )
    # a task's own settings win (e.g. KTO's sampling)
    return (spec.args_class or TrainingArguments)(**{**settings, **spec.args_extra})


def build_trainer(cfg: RunConfig, model: Any, tokenizer: Any, train_ds: Any, eval_ds: Any, collator: Any,
                  compute_metrics: Any, metric: str, output_dir: Path, console: Any, quiet: bool = False,
                  class_weights: torch.Tensor | None = None, loss_only: bool = False,
                  trainer_options: dict[str, Any] | None = None, spec: TrainerSpec | None = None,
                  extra_callbacks: list[Any] | None = None) -> tuple[TuneforgeTrainer, OverfitDetector, GracefulStop]:
    spec = spec or TrainerSpec()
    args = training_arguments(cfg, output_dir, metric, len(train_ds), loss_only, spec)
    overfit = OverfitDetector(cfg.training.overfit.patience, cfg.training.overfit.stop, console)
    stop = GracefulStop()
    callbacks: list[Any] = [RichProgress(console, quiet), overfit, NanGuard(), stop]
    early = cfg.training.early_stopping
    if early.patience is not None:
        callbacks.append(ResumableEarlyStopping(early.patience, early.min_delta))
    callbacks += extra_callbacks or []  # e.g. a sweep's pruning callback
    optional = {k: v for k, v in (("data_collator", collator), ("compute_metrics", compute_metrics)) if v is not None}
    trainer = trainer_class(spec.base or Trainer)(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                       processing_class=tokenizer, callbacks=callbacks, class_weights=class_weights,
                                       group_by_length=cfg.training.group_by_length, **optional,
                                       **spec.init_extra, **(trainer_options or {}))
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, overfit, stop
