"""Instruction / chat supervised fine-tuning of causal LMs: loss on assistant turns only, optional packing.

Data: prompt/completion, Alpaca-style instruction/input/output, or chat `messages` (system/user/assistant, multi-turn);
all become `messages`. The chat template is the tokenizer's own or a built-in one, and is saved with the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.packing import PackedCollator, pack
from tuneforge.evaluation.compare_types import Comparison
from tuneforge.lazy_torch import inference_mode
from tuneforge.methods.base import HeadInfo
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams
from tuneforge.tasks.chat_templates import TemplateError, choose_template, render, tokenize_with_masks

if TYPE_CHECKING:
    import torch

ROLES = ("system", "user", "assistant")


class ForgettingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Measure loss on a reference set before and after training.")
    reference: str | None = Field(None, description="JSONL of general text ('text' field); None: a seeded sample "
                                                    "of the base model's own generations.")
    samples: int = Field(32, ge=1, description="Generated reference texts (when no file is given).")
    sample_tokens: int = Field(64, ge=8, description="Tokens per generated reference text.")
    replay_ratio: float = Field(0.0, ge=0, le=1, description="Mix this share (of the training set size) of "
                                                             "reference text into training (mitigation).")
    kl_to_base: float = Field(0.0, ge=0, description="Weight of a KL(tuned || base) penalty on answer tokens "
                                                      "(mitigation).")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="Learning-rate factor for pretrained weights; "
                                                                  "adapters and heads keep the full rate (mitigation).")


class SFTParams(TaskParams):
    name: Literal["sft"] = "sft"
    format: Literal["auto", "prompt_completion", "alpaca", "messages"] = "auto"
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3"] = Field(
        "auto", description="auto: the tokenizer's own if it has one, else chatml.")
    train_on_prompt: bool = Field(False, description="Also train on system/user tokens (default: assistant only).")
    packing: bool = Field(True, description="Best-fit-decreasing packing, attention and positions reset per example.")
    system_prompt: str | None = Field(None, description="Prepended as a system turn where a record has none.")
    max_new_tokens: int = Field(128, ge=1, description="Generation length for predictions and samples.")
    eval_generations: int = Field(32, ge=0, description="Test examples to generate for (exact match, ROUGE-L).")
    forgetting: ForgettingParams = ForgettingParams()
    answer_pattern: str | None = Field(None, description="Regex whose first group is the answer for exact match, "
                                                          r"e.g. '####\s*(-?[\d,.]+)' for GSM8K; None: whole reply.")


def _prompt_part(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation up to (not including) its last assistant turn: what a model is asked at test time."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def _trains(row: dict[str, list[int]]) -> bool:
    """Whether an encoded row has a trained label after its first position (the loss shifts labels by one)."""
    return any(x != -100 for x in row["labels"][1:])


def _text(raw: dict[str, Any], column: str) -> str:
    value = raw.get(column)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"missing or empty '{column}'", fix=f"give every record a non-empty '{column}' string")
    return value


@TASKS.register
class SFT(Task):
    name = "sft"
    Params = SFTParams
    primary_metric: ClassVar[str] = "loss"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    generative: ClassVar[bool] = True
    pipeline_tag: ClassVar[str | None] = "text-generation"
    supports_dry_run: ClassVar[bool] = True
    comparison: ClassVar[Any] = Comparison(
        "tuneforge.evaluation.compare_generation:generation_entrants", "answer_loss", False)
    baseline_names: ClassVar[tuple[str, ...]] = ("base_model",)
    loss_only_eval: ClassVar[bool] = True
    preserves_whitespace: ClassVar[bool] = True  # trains on the text: newlines and indentation kept
    supports_fast_path: ClassVar[bool] = True
    params: SFTParams

    # ---- data -------------------------------------------------------------------------------------------
    def _format(self, raw: dict[str, Any], c: Any) -> str:
        if self.params.format != "auto":
            return self.params.format
        if c.messages in raw:
            return "messages"
        if c.instruction in raw and c.output in raw:
            return "alpaca"
        if c.prompt in raw and c.completion in raw:
            return "prompt_completion"
        raise RecordError(f"cannot tell the format (columns found: {', '.join(map(str, raw))})",
                          fix=f"give '{c.messages}', or '{c.instruction}'+'{c.output}', or '{c.prompt}'+"
                              f"'{c.completion}' (rename with data.columns)")

    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        fmt = self._format(raw, columns)
        if fmt == "prompt_completion":
            messages = [{"role": "user", "content": _text(raw, columns.prompt)},
                        {"role": "assistant", "content": _text(raw, columns.completion)}]
        elif fmt == "alpaca":
            extra = raw.get(columns.input)
            prompt = _text(raw, columns.instruction) + (f"\n\n{extra}" if isinstance(extra, str) and extra else "")
            messages = [{"role": "user", "content": prompt},
                        {"role": "assistant", "content": _text(raw, columns.output)}]
        else:
            messages = self._messages(raw.get(columns.messages), columns.messages)
        if self.params.system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.params.system_prompt}, *messages]
        return {"messages": messages}

    @staticmethod
    def _messages(value: Any, column: str) -> list[dict[str, str]]:
        if not isinstance(value, list) or not value:
            raise RecordError(f"'{column}' must be a non-empty list of {{role, content}} objects",
                              fix='e.g. [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]')
        out = []
        for i, m in enumerate(value):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                got = m.get("role") if isinstance(m, dict) else m
                raise RecordError(f"message {i} has no valid role (got {got!r})", fix=f"roles are {', '.join(ROLES)}")
            if not isinstance(m.get("content"), str) or not m["content"].strip():
                raise RecordError(f"message {i} ({m['role']}) has empty content", fix="fill it in or drop the turn")
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise RecordError("no assistant turn: nothing to learn", fix="add the assistant's reply")
        return out

    def text_of(self, example: dict[str, Any]) -> str:
        return "\n".join(m["content"] for m in example["messages"])

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        return {**example, "messages": [{**m, "content": transform(m["content"])} for m in example["messages"]]}

    def label_key(self, example: dict[str, Any]) -> str:
        return "all"

    def labels_of(self, example: dict[str, Any]) -> list[str]:
        return []

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        if not examples:
            return []
        _, template = self.chat_template(tokenizer)
        texts = [render(tokenizer, template, e["messages"]) for e in examples]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    # ---- model ------------------------------------------------------------------------------------------
    def chat_template(self, tokenizer: Any) -> tuple[str, str]:
        try:
            return choose_template(tokenizer, self.params.chat_template)
        except TemplateError as exc:
            from tuneforge.errors import ConfigError

            raise ConfigError(str(exc), key="task.chat_template", fix="use auto, chatml or llama3") from None

    def prepare_tokenizer(self, tokenizer: Any) -> None:
        tokenizer.chat_template = self.chat_template(tokenizer)[1]  # saved with the model: serving renders the same

    def build_model(self, model_path: str, labels: list[str], **load_kwargs: Any) -> Any:
        from tuneforge.tasks._generation import load_causal_lm

        model = load_causal_lm(model_path, **load_kwargs)
        # transformers only honours packed rows (block-diagonal masks from restarting position_ids) when no KV
        # cache exists; with use_cache on, a training forward builds one and examples attend across boundaries.
        model.config.use_cache = False
        return model

    def head_info(self, model: Any) -> HeadInfo:
        return HeadInfo(peft_task_type=self.peft_task_type, head_modules=())

    def _encode_rows(self, examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[dict]:
        _, template = self.chat_template(tokenizer)
        conversations = [e["messages"] for e in examples if "replay_text" not in e]
        chats = iter(tokenize_with_masks(tokenizer, template, conversations, max_length, self.params.train_on_prompt))
        rows = []
        for e in examples:
            if "replay_text" in e:  # forgetting mitigation: plain text, every token trained
                ids = tokenizer(e["replay_text"], truncation=True, max_length=max_length)["input_ids"]
                rows.append({"input_ids": ids, "labels": list(ids)})
            else:
                rows.append(next(chats))
        return rows

    def trainer_options(self) -> dict[str, Any]:
        f = self.params.forgetting
        return {"kl_to_base": f.kl_to_base, "backbone_lr_scale": f.backbone_lr_scale}

    def before_training(self, model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], seed: int,
                        run_dir: Path) -> dict[str, Any]:
        """Fix the reference set and measure the base model on it; add replay examples if asked."""
        from tuneforge.evaluation.forgetting import lm_loss, read_reference, sample_reference
        from tuneforge.registry.files import write_jsonl

        f = self.params.forgetting
        if not f.enabled:
            return {}
        # With replay, the texts replayed and the texts measured are disjoint: measuring forgetting on texts the
        # model was just trained on would flatter the mitigation. Sampled references draw a second, differently
        # seeded set to replay (the measured set stays the one a run without replay measures); a reference file is
        # split into alternate halves.
        replayed: list[str] = []
        if f.reference:
            texts = read_reference(f.reference)
            if f.replay_ratio > 0 and len(texts) >= 2:
                texts, replayed = texts[0::2], texts[1::2]
        else:
            texts = sample_reference(model, tokenizer, f.samples, f.sample_tokens, seed)
            if f.replay_ratio > 0:
                replayed = sample_reference(model, tokenizer, f.samples, f.sample_tokens, seed + 1)
        self._reference = texts
        write_jsonl(run_dir / "data" / "reference.jsonl", [{"text": t} for t in texts])
        info: dict[str, Any] = {"reference_texts": len(texts), "reference_source": f.reference or "base-model samples",
                                "reference_loss_before": lm_loss(model, tokenizer, texts, 512)}
        if replayed:
            write_jsonl(run_dir / "data" / "replay.jsonl", [{"text": t} for t in replayed])
            k = round(f.replay_ratio * len(splits["train"]))
            splits["train"] = splits["train"] + [{"replay_text": replayed[i % len(replayed)]} for i in range(k)]
            info.update(replay_examples=k, replay_texts=len(replayed))
        return info

    def token_mask(self, example: dict[str, Any], tokenizer: Any, max_length: int) -> list[tuple[str, bool]]:
        """(token text, trained?) pairs: what `data preview --masks` shows before any training is spent."""
        row = self._encode_rows([example], tokenizer, max_length)[0]
        return [(tokenizer.decode([t]), lab != -100) for t, lab in zip(row["input_ids"], row["labels"], strict=True)]

    def untrainable(self, examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[str | None]:
        """'answer_truncated_away' where the prompt fills max_length, so not one answer token is left to train."""
        if not examples:
            return []
        # Only an example longer than max_length is truncated; encoding (three renders each) just those is cheaper.
        long = [i for i, n in enumerate(self.token_lengths(examples, tokenizer)) if n > max_length]
        out: list[str | None] = [None] * len(examples)
        for i, row in zip(long, self._encode_rows([examples[i] for i in long], tokenizer, max_length), strict=True):
            out[i] = None if _trains(row) else "answer_truncated_away"
        return out

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        rows = self._encode_rows(examples, tokenizer, max_length)
        # The data stage already removed (and counted) examples whose answer truncation cuts away; replay rows and
        # direct callers still get the same guard.
        rows = [r for r in rows if _trains(r)]
        if self.params.packing:
            rows = pack(rows, max_length)
        return Dataset.from_list(rows)

    def collator(self, tokenizer: Any) -> Any:
        if self.params.packing:
            return PackedCollator(tokenizer.pad_token_id)
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)

    def metric_names(self) -> list[str]:
        return []

    def compute_metrics(self, labels: list[str]) -> Callable[[Any], dict[str, float]] | None:  # type: ignore[override]
        return None

    def answer_batches(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], max_length: int,
                       batch_size: int) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """(model inputs, labels) of the examples, a batch at a time, on the model's device (eval mode)."""
        model.eval()
        device = next(model.parameters()).device
        rows = self._encode_rows(examples, tokenizer, max_length)
        collate = PackedCollator(tokenizer.pad_token_id)
        for start in range(0, len(rows), batch_size):
            batch = collate([{**r, "position_ids": list(range(len(r["input_ids"])))}
                             for r in rows[start:start + batch_size]])
            inputs = {"input_ids": batch["input_ids"].to(device), "position_ids": batch["position_ids"].to(device),
                      "use_cache": False}
            yield inputs, batch["labels"].to(device)

    @inference_mode
    def answer_loss(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], max_length: int,
                    batch_size: int) -> tuple[float, int]:
        """Mean negative log-likelihood per trained (answer) token, and the token count."""
        import torch

        total, count = 0.0, 0
        for inputs, labels in self.answer_batches(model, tokenizer, examples, max_length, batch_size):
            logits = model(**inputs).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                                     shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((shift_labels != -100).sum())
        return total / max(count, 1), count

    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        """Answer loss/perplexity on every example; exact match and ROUGE-L on the first `eval_generations`."""
        from tuneforge.evaluation.generation import exact_match, mean_rouge_l

        loss, tokens = self.answer_loss(model, tokenizer, examples, max_length, min(batch_size, 16))
        metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "answer_tokens": float(tokens)}
        reference = getattr(self, "_reference", None)
        if reference:
            from tuneforge.evaluation.forgetting import lm_loss

            metrics["reference_loss"] = lm_loss(model, tokenizer, reference, 512)
        chosen = examples[:self.params.eval_generations]
        if not chosen:
            return EvalResult(metrics)
        prompts = [_prompt_part(e["messages"]) for e in chosen]
        references = [e["messages"][-1]["content"] if e["messages"][-1]["role"] == "assistant" else ""
                      for e in chosen]
        replies = [r["reply"] for r in self.predict(model, tokenizer, prompts, labels, max_length, batch_size)]
        metrics["exact_match"] = exact_match(replies, references, self.params.answer_pattern)
        metrics["rouge_l"] = mean_rouge_l(replies, references)
        samples = [{"prompt": p[-1]["content"], "reference": r, "generated": g}
                   for p, r, g in zip(prompts, references, replies, strict=True)]
        return EvalResult(metrics, predictions=replies, references=references, extra={"samples": samples})

    def predict(self, model: Any, tokenizer: Any, texts: list[Any], labels: list[str], max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """One reply per input: a user message (str) or a whole conversation (list of {role, content})."""
        from tuneforge.tasks._generation import replies

        return replies(model, tokenizer, texts, self.params.chat_template, self.params.max_new_tokens)

    def baselines(self, base_model_path: str, tokenizer: Any, splits: dict[str, list[dict[str, Any]]],
                  labels: list[str], max_length: int, names: Sequence[str]) -> dict[str, EvalResult]:
        """The base model's answer loss on the same test examples and template (before fine-tuning)."""
        if not names:
            return {}
        base = self.build_model(base_model_path, [], pad_token_id=tokenizer.pad_token_id)
        return {"base_model": self.evaluate(base, tokenizer, splits["test"], labels, max_length, 16)}
