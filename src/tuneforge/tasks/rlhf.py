"""Online RL from a reward (GRPO, TRL underneath): the policy samples replies to prompts, a reward scores them, and
replies better than their group's average are made more likely.

Data: a `prompt` column (a string or chat messages); any other column is passed to the reward function (e.g. the
word a story must mention). The reward is `module:function` (see tasks/reward_functions.py) or a finished `reward` run.
Scored by the mean reward of sampled replies to held-out prompts, against the base model sampled the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneforge.errors import ConfigError
from tuneforge.lazy_torch import inference_mode
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, TaskParams
from tuneforge.tasks.chat_templates import END_OF_TURN, render
from tuneforge.tasks.preference import Preference

Scalar = str | int | float | bool


class RLHFParams(TaskParams):
    path_fields: ClassVar[tuple[str, ...]] = ("reward",)
    name: Literal["rlhf"] = "rlhf"
    algorithm: Literal["grpo"] = "grpo"
    reward: str = Field(description="'module:function' (an importable Python function, see "
                                    "tasks/reward_functions.py) or the folder of a finished `reward` run.")
    reward_kwargs: dict[str, Scalar | list[Scalar]] = Field({}, description="Keyword arguments for the function.")
    num_generations: int = Field(4, ge=2, description="Replies sampled per prompt (the group rewards are compared "
                                                      "within); batch_size x accumulation must be a multiple.")
    max_new_tokens: int = Field(64, ge=1, description="Longest sampled reply.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for training and evaluation replies.")
    beta: float = Field(0.0, ge=0, description="KL penalty towards the base model (0: no reference model kept).")
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3"] = "auto"
    eval_prompts: int = Field(64, ge=1, description="Held-out prompts scored at the end (base and tuned).")
    eval_samples: int = Field(4, ge=1, description="Sampled replies per held-out prompt.")


@TASKS.register
class RLHF(Preference):
    name = "rlhf"
    Params = RLHFParams  # type: ignore[assignment]
    primary_metric: ClassVar[str] = "mean_reward"
    training_metric: ClassVar[str | None] = "reward"
    loss_only_eval: ClassVar[bool] = True
    params: RLHFParams  # type: ignore[assignment]

    # ---- config and data --------------------------------------------------------------------------------
    def check_config(self, cfg: Any) -> None:
        t, g = cfg.training, self.params.num_generations
        if (t.batch_size * t.gradient_accumulation_steps) % g:
            raise ConfigError(f"batch_size x gradient_accumulation_steps ({t.batch_size} x "
                              f"{t.gradient_accumulation_steps}) is not a multiple of num_generations ({g}): "
                              f"each prompt's {g} replies must land in one batch", key="training.batch_size",
                              fix=f"set training.batch_size to a multiple of {g}")
        self.reward_function(cfg.data.max_length)  # a wrong import path fails now, not after the model loads

    def reward_function(self, max_length: int = 512) -> Callable[..., list[float]]:
        if getattr(self, "_reward", None) is None:
            from tuneforge.tasks.reward_functions import load_reward

            self._reward = load_reward(self.params.reward, dict(self.params.reward_kwargs), max_length)
        return self._reward

    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Sequence[str] | None) -> dict[str, Any]:
        prompt = raw.get(columns.prompt)
        if isinstance(prompt, str) and prompt.strip():
            messages = [{"role": "user", "content": prompt.strip()}]
        elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) and m.get("content") for m in prompt):
            messages = [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in prompt]
        else:
            raise RecordError(f"missing or empty '{columns.prompt}' (columns found: {', '.join(map(str, raw))})",
                              fix=f"give every record a '{columns.prompt}' string or list of messages")
        fields = {k: v for k, v in raw.items() if k != columns.prompt}
        for key, value in fields.items():
            if not isinstance(value, Scalar | None):
                raise RecordError(f"column '{key}' holds a {type(value).__name__}",
                                  fix="extra columns (passed to the reward function) must be strings or numbers")
        return {"prompt": messages, "fields": fields}

    def text_of(self, example: dict[str, Any]) -> str:
        return "\n".join(m["content"] for m in example["prompt"])

    def set_text(self, example: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
        return {**example, "prompt": [{**m, "content": transform(m["content"])} for m in example["prompt"]]}

    def token_lengths(self, examples: list[dict[str, Any]], tokenizer: Any) -> list[int]:
        _, template = self.chat_template(tokenizer)
        texts = [render(tokenizer, template, e["prompt"], generation_prompt=True) for e in examples]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, labels: list[str], max_length: int) -> Any:
        from datasets import Dataset

        return Dataset.from_list([{"prompt": e["prompt"], **e["fields"]} for e in examples])

    def metric_names(self) -> list[str]:
        return ["reward"]  # GRPO's validation: mean reward of replies sampled for the validation prompts

    # ---- trainer ----------------------------------------------------------------------------------------
    def trainer_spec(self, cfg: Any) -> Any:
        from trl import GRPOConfig, GRPOTrainer

        from tuneforge.training.trainer import TrainerSpec

        p, g = self.params, self.params.num_generations
        reward = self.reward_function(cfg.data.max_length)
        stop = END_OF_TURN.get(getattr(self, "_template_name", ""))
        extra = {"num_generations": g, "max_completion_length": p.max_new_tokens, "temperature": p.temperature,
                 "beta": p.beta, "remove_unused_columns": False, "log_completions": False,
                 # evaluation samples num_generations replies per prompt too; the batch must hold whole groups
                 "per_device_eval_batch_size": g * max(1, cfg.training.eval_batch_size // g)}
        return TrainerSpec(GRPOTrainer, GRPOConfig, extra, {"reward_funcs": [_StopAt(reward, stop)]})

    def prepare_tokenizer(self, tokenizer: Any) -> None:
        self._template_name, tokenizer.chat_template = self.chat_template(tokenizer)

    # ---- evaluation -------------------------------------------------------------------------------------
    @inference_mode
    def evaluate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], labels: list[str],
                 max_length: int, batch_size: int) -> EvalResult:
        """Mean reward of `eval_samples` sampled replies per held-out prompt (seeded, so base and tuned models
        are sampled with the same random stream)."""
        import torch

        from tuneforge.tasks._generation import sample_replies

        p = self.params
        reward = self.reward_function(max_length)
        chosen = examples[:p.eval_prompts]
        model.eval()
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        rewards, samples = [], []
        try:
            for e in chosen:
                texts = sample_replies(model, tokenizer, e["prompt"], p.chat_template, p.eval_samples,
                                       p.max_new_tokens, p.temperature)
                columns = {k: [v] * len(texts) for k, v in e["fields"].items()}
                scores = reward(prompts=[e["prompt"]] * len(texts), completions=texts, **columns)
                rewards.extend(scores)
                samples.append({"prompt": e["prompt"][-1]["content"], "generated": texts[0], "reward": scores[0]})
        finally:
            torch.random.set_rng_state(state)
        n = max(len(rewards), 1)
        mean = sum(rewards) / n
        std = (sum((r - mean) ** 2 for r in rewards) / n) ** 0.5
        return EvalResult({"mean_reward": mean, "reward_std": std, "replies": float(len(rewards))},
                          predictions=[s["generated"] for s in samples], extra={"samples": samples})

    # baselines: Preference's (the base model evaluated exactly as above, i.e. sampled with the same seed).


class _StopAt:
    """Scores only the reply up to the template's end-of-turn text (TRL generates to the length limit when that
    marker is several tokens rather than the tokenizer's EOS), as evaluation and serving do."""

    def __init__(self, reward: Callable[..., list[float]], stop: str | None) -> None:
        self.reward, self.stop = reward, stop
        self.__name__ = getattr(reward, "__name__", "reward")

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        from tuneforge.tasks._generation import cut_at_stop
        from tuneforge.tasks.reward_functions import _text

        return self.reward(prompts=prompts, completions=[cut_at_stop(_text(c), self.stop) for c in completions],
                           **kwargs)
