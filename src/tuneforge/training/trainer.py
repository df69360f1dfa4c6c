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
from tuneforge.training.checkpoint import diverged, save_failed, write_checksums
from tuneforge.training.regularizers import BaseModelReference, kl_to_base, parameter_groups
from tuneforge.training.sampler import SeededLengthGroupedSampler
from tuneforge.training.spec import TrainerSpec


class TuneforgeTrainerMixin:
    """What every tuneforge trainer adds to a transformers/TRL trainer: reproducible length-grouped batches,
    atomic checkpoints, correct loss scaling under gradient accumulation and optional class weights.

    Mixed in before the library class (`class X(TuneforgeTrainerMixin, DPOTrainer)`, see `trainer_class`), so TRL's
    trainers get the same behaviour as the plain Trainer without a second pipeline.
    """

    args: Any
    state: Any
    train_dataset: Any
    model_accepts_loss_kwargs: bool

    def __init__(self, *args: Any, class_weights: torch.Tensor | None = None, group_by_length: bool = True,
                 kl_to_base: float = 0.0, backbone_lr_scale: float = 1.0, **kwargs: Any) -> None:
        self.class_weights = class_weights
        self.group_by_length = group_by_length
        self.kl_to_base = kl_to_base
        self.backbone_lr_scale = backbone_lr_scale
        self._staging: str | None = None
        self._loss_scaled_for_ga = False
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        # transformers passes num_items_in_batch to any model whose forward takes **kwargs and then trusts its loss to
        # be divided by it; classification heads take **kwargs but ignore it (their loss is a per-batch mean).
        if not loss_counts_items(self.model):  # type: ignore[attr-defined]
            self.model_accepts_loss_kwargs = False
        self._base_reference = BaseModelReference(self.model) if kl_to_base > 0 else None  # type: ignore[attr-defined]

    @property
    def loss_is_scaled_for_ga(self) -> bool:
        """Read by Trainer.training_step right after compute_loss: whether that loss was already divided by the size
        of the whole accumulated batch (num_items_in_batch), so it must not be divided by the accumulation steps
        again. Every loss path here divides by num_items_in_batch when it is given, else takes a per-batch mean.
        A library trainer that states its own (TRL's, e.g. GRPO) overrides this in `trainer_class`."""
        return self._loss_scaled_for_ga

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list[Any], Any]:
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)  # type: ignore[misc]
        if self.class_weights is not None and self._base_reference is None and batches and "labels" in batches[0]:
            # The class-weighted loss is normalised by the total weight of the whole accumulated batch, so batch 8
            # equals 4 x 2 accumulation steps even when the two halves hold different classes.
            num_items = sum(weighted_count(b["labels"], self.class_weights) for b in batches)
        return batches, num_items

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
        # Grouped by the global batch, so N processes of batch b see the same examples per step as one of N*b.
        global_batch = self.args.train_batch_size * self.args.world_size
        return SeededLengthGroupedSampler(lengths, global_batch, self.args.seed)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        # Each path below divides by num_items_in_batch when given (the transformers default and DistillationTrainer
        # included: transformers only counts items for models whose loss honours them, see __init__).
        self._loss_scaled_for_ga = num_items_in_batch is not None
        if self._base_reference is not None:
            return self._loss_with_kl_to_base(model, inputs, return_outputs, num_items_in_batch)
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits
        weights = self.class_weights.to(logits.device, logits.dtype)
        if labels.dtype.is_floating_point:  # multi-label
            total = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype),
                                                                          pos_weight=weights, reduction="sum")
        else:
            total = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                                      weight=weights, ignore_index=-100, reduction="sum")
        # Over this batch alone this is exactly the weighted mean cross_entropy/BCE would take.
        count = num_items_in_batch if num_items_in_batch is not None else weighted_count(labels, self.class_weights)
        loss = total / torch.as_tensor(count, device=total.device, dtype=total.dtype).clamp(min=1e-12)
        return (loss, outputs) if return_outputs else loss

    def _loss_with_kl_to_base(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                              num_items: Any) -> Any:
        """The model's own (causal-LM) loss plus the KL-to-base penalty, both summed over trained tokens and divided
        by num_items when given (the whole accumulated batch's count), else both per-batch means."""
        extra = {"num_items_in_batch": num_items} if num_items is not None and self.model_accepts_loss_kwargs else {}
        outputs = model(**inputs, **extra)
        penalty = kl_to_base(outputs.logits, self._base_reference.logits(model, inputs),  # type: ignore[union-attr]
                             inputs["labels"], num_items)
        loss = outputs.loss + self.kl_to_base * penalty
        if num_items is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # type: ignore[attr-defined] - num_items counts all devices
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """Every micro-batch's loss is checked before the optimiser can step on it: a NaN/inf stops the run naming
        the step and the batch, and no checkpoint after the last good one is ever written."""
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        self._micro_batches = getattr(self, "_micro_batches", 0) + 1
        if not bool(torch.isfinite(loss.detach()).all()):
            raise diverged(loss, self.state, self._micro_batches, inputs, Path(self.args.output_dir))  # type: ignore[attr-defined]
        return loss

    # ---- atomic checkpoints: write into a staging folder, then rename into place ---------------------------
    def _get_output_dir(self, trial: Any) -> str:
        return self._staging or super()._get_output_dir(trial)  # type: ignore[misc]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        final_root = self.args.output_dir
        staging = os.path.join(final_root, ".staging")
        zero = self.is_world_process_zero()  # type: ignore[attr-defined]
        if zero:
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging, exist_ok=True)
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined] - every rank writes its RNG state here
        self._staging = staging
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
            self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
            if zero and self.state.best_global_step:
                best = os.path.join(final_root, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
                self.state.best_model_checkpoint = best
                self.state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
            if zero:
                write_checksums(Path(staging) / name)  # a later resume refuses a corrupted or truncated file
        except OSError as exc:  # a full disk, a vanished mount: the checkpoints already in place stay as they are
            shutil.rmtree(staging, ignore_errors=True)
            raise save_failed(Path(final_root), name, exc) from None
        finally:
            self._staging = None
        if not zero:
            self.accelerator.wait_for_everyone()  # type: ignore[attr-defined] - rank 0 renames it into place
            return
        target = os.path.join(final_root, name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(os.path.join(staging, name), target)  # atomic on one filesystem
        shutil.rmtree(staging, ignore_errors=True)
        from transformers.trainer_utils import rotate_checkpoints

        rotate_checkpoints(output_dir=final_root, save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]


class TuneforgeTrainer(TuneforgeTrainerMixin, Trainer):
    """The transformers Trainer with tuneforge's behaviour (classification, NER, SFT)."""


def trainer_class(base: type) -> type:
    """A library trainer class (e.g. TRL's DPOTrainer) with tuneforge's behaviour mixed in."""
    if base is Trainer:
        return TuneforgeTrainer
    # A library trainer that states how its own loss is scaled under accumulation (TRL's: DPO, KTO, reward: per-batch
    # means; GRPO: already scaled) knows best; None there means transformers' rule. Ours (DistillationTrainer) state
    # nothing and get the mixin's per-call answer.
    declared = [c for c in base.__mro__ if c is not Trainer and "loss_is_scaled_for_ga" in c.__dict__]
    attrs = {"loss_is_scaled_for_ga": declared[0].__dict__["loss_is_scaled_for_ga"]} if declared else {}
    return type(f"Tuneforge{base.__name__}", (TuneforgeTrainerMixin, base), attrs)


def loss_counts_items(model: Any) -> bool:
    """Whether the model's own loss divides by num_items_in_batch when given it: transformers' causal-LM loss
    (ForCausalLMLoss, also the fallback of models naming no loss type, e.g. GPT-2) does; classification and token
    classification heads take **kwargs but ignore it."""
    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.trainer_utils import unwrap_peft_model

    inner = unwrap_peft_model(model)
    if getattr(getattr(inner, "config", None), "is_encoder_decoder", False):
        return False
    loss_type = getattr(inner, "loss_type", None)
    if loss_type in LOSS_MAPPING:
        return LOSS_MAPPING[loss_type] is ForCausalLMLoss
    return type(inner).__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()


def weighted_count(labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """What the class-weighted loss of `labels` is divided by: the sum of the true classes' weights (single-label,
    as cross_entropy's weighted mean), or the number of label entries (multi-label, as BCE's mean)."""
    if labels.dtype.is_floating_point:
        return torch.tensor(float(labels.numel()))
    kept = labels[labels != -100].cpu()
    return class_weights.float().cpu()[kept].sum()


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
    import importlib.util

    from tuneforge.training.distributed import sharding_arguments

    sharded = sharding_arguments(t.sharding, not use_cpu, importlib.util.find_spec("deepspeed") is not None)
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
    return (spec.args_class or TrainingArguments)(**{**settings, **sharded, **spec.args_extra})


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
