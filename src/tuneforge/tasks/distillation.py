"""Distillation: a (smaller) student causal LM learns a teacher's token distributions on instruction/chat data.

Same data, templates, masks and packing as `sft`; the loss mixes KL to the teacher's temperature-softened
distributions with the hard-label loss (training/distillation.py). The teacher is a finished run (e.g. an `sft` run
to compress) or a model folder, and must share the student's tokenizer. Scored like `sft`, plus the student's KL to
the teacher on held-out answers; the teacher itself is measured as a baseline (the ceiling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.errors import ConfigError
from tuneforge.lazy_torch import inference_mode
from tuneforge.tasks.base import TASKS, EvalResult
from tuneforge.tasks.sft import SFT, SFTParams


class DistillationParams(SFTParams):
    path_fields: ClassVar[tuple[str, ...]] = ("teacher",)
    name: Literal["distillation"] = "distillation"  # type: ignore[assignment]
    teacher: str = Field(description="Folder of a finished run (its tuned model) or of a causal LM, with the "
                                     "student's tokenizer.")
    temperature: float = Field(2.0, gt=0, description="Softens both distributions; higher passes on more of the "
                                                      "teacher's ranking of unlikely tokens.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the teacher (KL) term; 1 - alpha goes to the "
                                                      "hard labels.")


def _load_teacher(spec: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a run folder or a model folder."""
    path = Path(spec).expanduser()
    if (path / "model" / "tuneforge.json").is_file():
        from tuneforge.registry.artifacts import load_model

        loaded = load_model(path / "model")
        model = loaded.model
        if hasattr(model, "merge_and_unload"):  # adapters folded in: the teacher is only ever run forward
            model = model.merge_and_unload()
        return model, loaded.tokenizer
    if not (path / "config.json").is_file():
        raise ConfigError(f"teacher {spec!r} is neither a finished run folder nor a model folder", key="task.teacher",
                          fix="give runs/<name> of a finished run, or a folder with config.json and weights")
    from tuneforge.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(path))
    teacher = SFT(SFTParams()).build_model(str(path), [], pad_token_id=tokenizer.pad_token_id)
    return teacher, tokenizer


def _same_vocabulary(a: Any, b: Any) -> bool:
    """Every token both know has the same id, and they share all but a few added specials (tokenizer classes may
    add e.g. '<|endoftext|>' at the end); the loss compares the shared id range only."""
    va, vb = a.get_vocab(), b.get_vocab()
    shared = va.keys() & vb.keys()
    return all(va[t] == vb[t] for t in shared) and len(shared) >= min(len(va), len(vb)) - 8


@TASKS.register
class Distillation(SFT):
    name = "distillation"
    Params = DistillationParams  # type: ignore[assignment]
    baseline_names: ClassVar[tuple[str, ...]] = ("base_model", "teacher")
    ceiling_names: ClassVar[tuple[str, ...]] = ("teacher",)
    comparison: ClassVar[Any] = None  # compare's generation rows do not model a teacher yet
    supports_dry_run: ClassVar[bool] = False
    params: DistillationParams  # type: ignore[assignment]

    def check_config(self, cfg: Any) -> None:
        path = Path(self.params.teacher).expanduser()
        if not path.is_dir():
            raise ConfigError(f"teacher folder {self.params.teacher!r} not found", key="task.teacher",
                              fix="give the folder of a finished run or of a causal LM")
        if self.params.forgetting.kl_to_base > 0:
            raise ConfigError("kl_to_base replaces the distillation loss", key="task.forgetting.kl_to_base",
                              fix="set it to 0 (the teacher term already anchors the student)")

    def before_training(self, model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], seed: int,
                        run_dir: Path) -> dict[str, Any]:
        self._teacher, teacher_tokenizer = _load_teacher(self.params.teacher)
        if not _same_vocabulary(teacher_tokenizer, tokenizer):
            raise ConfigError("the teacher's tokenizer differs from the student's: their token distributions "
                              "cannot be compared", key="task.teacher",
                              fix="distil into a student with the teacher's tokenizer (same model family)")
        teacher_params = sum(p.numel() for p in self._teacher.parameters())
        student_params = sum(p.numel() for p in model.parameters())
        return {**super().before_training(model, tokenizer, splits, seed, run_dir),
                "teacher": self.params.teacher, "teacher_params": teacher_params,
                "compression": round(teacher_params / max(student_params, 1), 2)}

    def trainer_spec(self, cfg: Any) -> Any:
        from tuneforge.training.distillation import DistillationTrainer
        from tuneforge.training.spec import TrainerSpec

        return TrainerSpec(DistillationTrainer, init_extra={"teacher": self._teacher, "alpha": self.params.alpha,
                                                            "temperature": self.params.temperature})

    def trainer_options(self) -> dict[str, Any]:
        return {"backbone_lr_scale": self.params.forgetting.backbone_lr_scale}

    @inference_mode
    def teacher_kl(self, model: Any, teacher: Any, tokenizer: Any, examples: list[dict[str, Any]],
                   max_length: int, batch_size: int = 16) -> float:
        """Mean KL(teacher || student) at temperature 1 over answer tokens: how far the student still is."""
        from tuneforge.training.distillation import distillation_loss

        teacher.to(next(model.parameters()).device).eval()
        total, count = 0.0, 0
        for inputs, labels in self.answer_batches(model, tokenizer, examples, max_length, batch_size):
            _, soft, _ = distillation_loss(model(**inputs).logits, teacher(**inputs).logits, labels, 1.0, 1.0)
            n = int((labels[:, 1:] != -100).sum())
            total, count = total + float(soft) * n, count + n
        return total / max(count, 1)

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        result = super().evaluate(model, tokenizer, examples, labels, max_length, batch_size)
        teacher = getattr(self, "_teacher", None)
        if teacher is not None:
            result.metrics["teacher_kl"] = 0.0 if model is teacher else self.teacher_kl(
                model, teacher, tokenizer, examples, max_length)
        return result

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """The untrained student (`base_model`) and the teacher (the ceiling) on the same test examples."""
        out = super().baselines(base_model_path, tokenizer, splits, labels, max_length,
                                [n for n in names if n == "base_model"])
        if "teacher" in names and getattr(self, "_teacher", None) is not None:
            out["teacher"] = self.evaluate(self._teacher, tokenizer, splits["test"], labels, max_length, 16)
        return out
