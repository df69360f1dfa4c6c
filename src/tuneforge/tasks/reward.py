"""Reward modelling: a sequence-scoring head (one output) trained on preference pairs (TRL's RewardTrainer).

Same data as the `preference` task (prompt/chosen/rejected or HH transcripts). Scored by pairwise accuracy on
held-out pairs: how often the chosen answer gets the higher reward. A trained reward model can drive `rlhf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.lazy_torch import inference_mode
from tuneforge.methods.base import HeadInfo
from tuneforge.tasks.base import TASKS, EvalResult, TaskParams
from tuneforge.tasks.chat_templates import render
from tuneforge.tasks.preference import Preference

HEAD_NAMES = ("score", "classifier")


class RewardParams(TaskParams):
    name: Literal["reward"] = "reward"
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3"] = "auto"
    center_rewards: float | None = Field(None, ge=0, description="Coefficient pushing mean rewards to zero "
                                                                  "(TRL's center_rewards_coefficient).")


@TASKS.register
class Reward(Preference):
    name = "reward"
    Params = RewardParams  # type: ignore[assignment]
    primary_metric: ClassVar[str] = "pairwise_accuracy"
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    generative: ClassVar[bool] = False
    pipeline_tag: ClassVar[str | None] = "text-classification"
    training_metric: ClassVar[str | None] = "loss"
    params: RewardParams  # type: ignore[assignment]

    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from transformers import AutoModelForSequenceClassification

        from tuneforge.models.loading import from_pretrained

        pad_token_id = load_kwargs.pop("pad_token_id", None)
        model = from_pretrained(AutoModelForSequenceClassification, model_path, num_labels=1, **load_kwargs)
        if model.config.pad_token_id is None and pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
        return model

    def head_info(self, model: Any) -> HeadInfo:
        heads = tuple(name for name, _ in model.named_children() if name in HEAD_NAMES) if model is not None else ()
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=heads)

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        return Dataset.from_list([{"prompt": e["prompt"], "chosen": [{"role": "assistant", "content": e["chosen"]}],
                                   "rejected": [{"role": "assistant", "content": e["rejected"]}]} for e in examples])

    def trainer_spec(self, cfg: Any) -> Any:
        from trl import RewardConfig, RewardTrainer

        from tuneforge.training.trainer import TrainerSpec

        extra: dict[str, Any] = {"max_length": cfg.data.max_length}
        if self.params.center_rewards is not None:
            extra["center_rewards_coefficient"] = self.params.center_rewards
        return TrainerSpec(RewardTrainer, RewardConfig, extra)

    @inference_mode
    def score(self, model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
              max_length: int) -> list[float]:
        """The reward of each whole conversation (prompt + answer)."""
        _, template = self.chat_template(tokenizer)
        model.eval()
        device = next(model.parameters()).device
        out = []
        for messages in conversations:
            ids = tokenizer(render(tokenizer, template, messages), add_special_tokens=False, truncation=True,
                            max_length=max_length, return_tensors="pt")["input_ids"].to(device)
            out.append(float(model(input_ids=ids).logits[0, 0]))
        return out

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        def convo(e: dict[str, Any], key: str) -> list[dict[str, str]]:
            return [*e["prompt"], {"role": "assistant", "content": e[key]}]

        chosen = self.score(model, tokenizer, [convo(e, "chosen") for e in examples], max_length)
        rejected = self.score(model, tokenizer, [convo(e, "rejected") for e in examples], max_length)
        n = max(len(examples), 1)
        wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True))
        return EvalResult({"pairwise_accuracy": wins / n,
                           "mean_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n,
                           "pairs": float(len(examples))})

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """Score conversations (a list of messages) or single user+assistant strings 'question\\nanswer'."""
        conversations = [t if isinstance(t, list) else [{"role": "user", "content": str(t)}] for t in texts]
        return [{"reward": r} for r in self.score(model, tokenizer, conversations, max_length)]

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """The base model with an untrained (seeded) scoring head: what training has to beat (about chance)."""
        import torch

        if not names:
            return {}
        torch.manual_seed(0)
        base = self.build_model(base_model_path, [], pad_token_id=tokenizer.pad_token_id)
        return {"base_model": self.evaluate(base, tokenizer, splits["test"], labels, max_length, 16)}
