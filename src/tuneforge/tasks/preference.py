"""Preference optimisation of causal LMs from pairs of answers: DPO, IPO, KTO, ORPO (TRL underneath).

Data: prompt/chosen/rejected (prompt a string or chat messages), two whole transcripts in Anthropic HH style
("\\n\\nHuman: ... \\n\\nAssistant: ...") that share everything but the final answer, or OpenAI's DPO lines
(input.messages, preferred_output, non_preferred_output; data/openai_format.py). Scored on held-out pairs by the
implicit reward beta * (log pi(y|x) - log pi_ref(y|x)): reward accuracy (ties count half) and mean margin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from tuneforge.data.openai_format import dpo_pair, is_dpo_line
from tuneforge.lazy_torch import inference_mode
from tuneforge.methods.base import HeadInfo
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams
from tuneforge.tasks.chat_templates import TemplateError, choose_template, render

if TYPE_CHECKING:
    pass

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


class PreferenceParams(TaskParams):
    name: Literal["preference"] = "preference"
    algorithm: Literal["dpo", "ipo", "kto", "orpo"] = "dpo"
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model (DPO/IPO/KTO); "
                                                "weight of the odds-ratio term (ORPO).")
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3"] = "auto"
    max_new_tokens: int = Field(128, ge=1)


def split_transcript(text: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{user: a}, {assistant: b}]."""
    parts = _TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return messages


def _answer(value: Any, column: str) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"missing or empty '{column}'", fix=f"give every pair a non-empty '{column}' answer")
    return value.strip()


@TASKS.register
class Preference(Task):
    name = "preference"
    Params = PreferenceParams
    primary_metric: ClassVar[str] = "reward_accuracy"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    generative: ClassVar[bool] = True
    pipeline_tag: ClassVar[str | None] = "text-generation"
    baseline_names: ClassVar[tuple[str, ...]] = ("base_model",)
    training_metric: ClassVar[str | None] = "loss"
    loss_only_eval: ClassVar[bool] = True
    preserves_whitespace: ClassVar[bool] = True  # trains on the text (also Reward, RLHF): whitespace kept
    params: PreferenceParams

    # ---- data -------------------------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        if is_dpo_line(raw) and columns.chosen not in raw:
            return dpo_pair(raw)
        for col in (columns.chosen, columns.rejected):
            if col not in raw:
                raise RecordError(f"missing column '{col}' (columns found: {', '.join(map(str, raw))})",
                                  fix="give prompt/chosen/rejected, or two whole transcripts chosen/rejected")
        if columns.prompt in raw:
            prompt = raw[columns.prompt]
            if isinstance(prompt, str) and prompt.strip():
                messages = [{"role": "user", "content": prompt.strip()}]
            elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
                messages = [{"role": m.get("role", ""), "content": str(m.get("content", ""))} for m in prompt]
            else:
                raise RecordError(f"empty or malformed '{columns.prompt}'", fix="a string or a list of messages")
            return {"prompt": messages, "chosen": _answer(raw[columns.chosen], columns.chosen),
                    "rejected": _answer(raw[columns.rejected], columns.rejected)}
        chosen = split_transcript(str(raw[columns.chosen]))
        rejected = split_transcript(str(raw[columns.rejected]))
        if not chosen or chosen[-1]["role"] != "assistant" or not rejected or rejected[-1]["role"] != "assistant":
            raise RecordError("a transcript does not end with an Assistant turn",
                              fix="each transcript must read '\\n\\nHuman: ...\\n\\nAssistant: ...'")
        if chosen[:-1] != rejected[:-1]:
            raise RecordError("chosen and rejected transcripts differ before their final answers",
                              fix="both must share the conversation and differ only in the last Assistant turn")
        if not chosen[-1]["content"] or not rejected[-1]["content"]:
            raise RecordError("an empty final answer", fix="drop the pair (--skip-invalid)")
        return {"prompt": chosen[:-1], "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]}

    def text_of(self, example: dict[str, Any]) -> str:
        return "\n".join([m["content"] for m in example["prompt"]] + [example["chosen"], example["rejected"]])

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        return {"prompt": [{**m, "content": transform(m["content"])} for m in example["prompt"]],
                "chosen": transform(example["chosen"]), "rejected": transform(example["rejected"]),
                **{k: v for k, v in example.items() if k.startswith("_")}}

    def label_key(self, example: dict[str, Any]) -> str:
        return "all"

    def labels_of(self, example: dict[str, Any]) -> list[str]:
        return []

    def chat_template(self, tokenizer: Any) -> tuple[str, str]:
        try:
            return choose_template(tokenizer, self.params.chat_template)
        except TemplateError as exc:
            from tuneforge.errors import ConfigError

            raise ConfigError(str(exc), key="task.chat_template", fix="use auto, chatml or llama3") from None

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        _, template = self.chat_template(tokenizer)
        texts = [render(tokenizer, template, e["prompt"] + [{"role": "assistant", "content": max(
            e["chosen"], e["rejected"], key=len)}]) for e in examples]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def prepare_tokenizer(self, tokenizer: Any) -> None:
        tokenizer.chat_template = self.chat_template(tokenizer)[1]

    # ---- model and trainer ------------------------------------------------------------------------------
    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from tuneforge.tasks._generation import load_causal_lm

        model = load_causal_lm(model_path, **load_kwargs)
        return model

    def head_info(self, model: Any) -> HeadInfo:
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=())

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        def answer(text: str) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": text}]

        if self.params.algorithm == "kto":  # unpaired: each pair gives one desirable and one undesirable example
            # In pair order here; the trainer shuffles them with the run's seed (training/kto.py).
            rows = [{"prompt": e["prompt"], "completion": answer(e[key]), "label": key == "chosen"}
                    for e in examples for key in ("chosen", "rejected")]
        else:
            rows = [{"prompt": e["prompt"], "chosen": answer(e["chosen"]), "rejected": answer(e["rejected"])}
                    for e in examples]
        return Dataset.from_list(rows)

    def collator(self, tokenizer: Any) -> Any:
        return None  # TRL's own

    def trainer_spec(self, cfg: Any) -> Any:
        from tuneforge.training.spec import TrainerSpec

        p = self.params
        extra = {"beta": p.beta, "max_length": cfg.data.max_length}
        if p.algorithm in ("dpo", "ipo"):
            from trl import DPOConfig, DPOTrainer

            return TrainerSpec(DPOTrainer, DPOConfig, {**extra, "loss_type": ["sigmoid" if p.algorithm == "dpo"
                                                                               else "ipo"]})
        if p.algorithm == "kto":
            from trl import KTOConfig

            from tuneforge.training.kto import SeededKTOTrainer

            return TrainerSpec(SeededKTOTrainer, KTOConfig, {**extra, "train_sampling_strategy": "sequential"})
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return TrainerSpec(ORPOTrainer, ORPOConfig, extra)

    def metric_names(self) -> list[str]:
        return []

    def compute_metrics(self, labels: list[str]) -> Any:
        return None

    # ---- evaluation -------------------------------------------------------------------------------------
    def _logp(self, model: Any, tokenizer: Any, template: str, prompt: list[dict[str, str]], answer: str,
              max_length: int) -> tuple[float, int]:
        """Sum and count of the answer tokens' log-probabilities given the prompt (the answer's end is kept when
        the whole is longer than max_length)."""
        import torch

        prompt_ids = tokenizer(render(tokenizer, template, prompt, generation_prompt=True),
                               add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(render(tokenizer, template, [*prompt, {"role": "assistant", "content": answer}]),
                             add_special_tokens=False)["input_ids"]
        shared = next((i for i, (a, b) in enumerate(zip(prompt_ids, full_ids, strict=False)) if a != b),
                      min(len(prompt_ids), len(full_ids)))
        answer_len = len(full_ids) - shared
        ids = full_ids[-max_length:]
        start = max(1, len(ids) - answer_len)
        x = torch.tensor([ids], device=next(model.parameters()).device)
        logp = torch.log_softmax(model(input_ids=x, use_cache=False).logits.float()[0, :-1], dim=-1)
        picked = logp[torch.arange(len(ids) - 1, device=x.device), x[0, 1:]][start - 1:]
        return float(picked.sum()), max(int(picked.numel()), 1)

    @inference_mode
    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        _, template = self.chat_template(tokenizer)
        model.eval()
        policy = [(self._logp(model, tokenizer, template, e["prompt"], e["chosen"], max_length),
                   self._logp(model, tokenizer, template, e["prompt"], e["rejected"], max_length)) for e in examples]
        if self.params.algorithm == "orpo":  # reference-free: the policy's own mean log-probabilities
            rewards = [(c[0] / c[1], r[0] / r[1]) for c, r in policy]
        else:
            reference = self._reference_logps(model, tokenizer, template, examples, max_length)
            beta = self.params.beta
            rewards = [(beta * (c[0] - rc), beta * (r[0] - rr)) for (c, r), (rc, rr) in zip(policy, reference,
                                                                                            strict=True)]
        wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in rewards]
        prefers = [1.0 if c[0] / c[1] > r[0] / r[1] else 0.0 for c, r in policy]
        n = max(len(examples), 1)
        return EvalResult({"reward_accuracy": sum(wins) / n, "reward_margin": sum(c - r for c, r in rewards) / n,
                           "logprob_accuracy": sum(prefers) / n, "pairs": float(len(examples))})

    def _reference_logps(self, model: Any, tokenizer: Any, template: str, examples: list[dict[str, Any]],
                         max_length: int) -> list[tuple[float, float]]:
        """Reference = the base model: PEFT adapters switched off, else the base weights loaded again."""
        import contextlib

        if hasattr(model, "disable_adapter"):
            context, reference = model.disable_adapter(), model
        else:
            context, reference = contextlib.nullcontext(), self.build_model(model.config._name_or_path, [])
            reference.eval()
        with context:
            return [(self._logp(reference, tokenizer, template, e["prompt"], e["chosen"], max_length)[0],
                     self._logp(reference, tokenizer, template, e["prompt"], e["rejected"], max_length)[0])
                    for e in examples]

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        from tuneforge.tasks._generation import replies

        return replies(model, tokenizer, texts, self.params.chat_template, self.params.max_new_tokens)

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """The untrained policy: its implicit rewards are all zero (accuracy 0.5 by definition), plus its own
        log-probability preference between the two answers."""
        if not names:
            return {}
        base = self.build_model(base_model_path, [], pad_token_id=tokenizer.pad_token_id)
        return {"base_model": self.evaluate(base, tokenizer, splits["test"], labels, max_length, 16)}
