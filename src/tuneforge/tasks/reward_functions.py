"""Rewards for the `rlhf` task: a Python function named by import path, or a finished `reward` run.

A reward function is ordinary Python in an importable module (never code written in the YAML):

    # my_rewards.py (on PYTHONPATH, or in the directory tuneforge is started from)
    def polite(prompts: list[str], completions: list[str], **columns) -> list[float]:
        return [1.0 if "please" in c.lower() else 0.0 for c in completions]

and the config names it: `task: {name: rlhf, reward: "my_rewards:polite", reward_kwargs: {...}}`. `prompts` are the
last user message of each prompt, `completions` the generated replies (plain strings); every other column of the
data arrives in `columns` as a list aligned with them, and `reward_kwargs` are passed as keyword arguments.
Built-in examples below (`tuneforge.tasks.reward_functions:mentions_word`, `...:length_in_range`).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

# Keyword arguments TRL adds for its own reward helpers; user functions never see them.
_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids")


def _text(value: Any) -> str:
    """A message list's last content, or the string itself."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


class FunctionReward:
    """Adapts a user function to TRL's reward signature, and checks what it returns."""

    def __init__(self, function: Callable[..., Any], spec: str, kwargs: dict[str, Any]) -> None:
        self.function = function
        self.spec = spec
        self.kwargs = kwargs
        self.__name__ = getattr(function, "__name__", "reward")  # TRL names the metric after it

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        columns = {k: v for k, v in columns.items() if k not in _TRL_KWARGS}
        texts = [_text(p) for p in prompts]
        out = self.function(prompts=texts, completions=[_text(c) for c in completions], **columns, **self.kwargs)
        values = list(out) if out is not None else []
        if len(values) != len(texts) or not all(isinstance(v, int | float) for v in values):
            raise ConfigError(f"reward function {self.spec} returned {type(out).__name__} of {len(values)} items; "
                              f"expected {len(texts)} numbers", key="task.reward",
                              fix="return one float per completion")
        return [float(v) if math.isfinite(v) else 0.0 for v in values]


class RunReward:
    """The reward model of a finished `reward` run, scoring each (prompt + reply) conversation."""

    def __init__(self, run_dir: Path, max_length: int) -> None:
        from tuneforge.registry.artifacts import load_model

        loaded = load_model(run_dir / "model")
        if loaded.task.name != "reward":
            raise ConfigError(f"{run_dir} is a {loaded.task.name!r} run, not a reward model", key="task.reward",
                              fix="give the folder of a run with task: reward, or module:function")
        self.loaded = loaded
        self.max_length = max_length
        self.__name__ = f"reward_model_{run_dir.name}"

    def __call__(self, prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        def convo(prompt: Any, reply: Any) -> list[dict[str, str]]:
            head = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            return [*head, {"role": "assistant", "content": _text(reply)}]

        task, model, tokenizer = self.loaded.task, self.loaded.model, self.loaded.tokenizer
        return task.score(model, tokenizer, [convo(p, c) for p, c in zip(prompts, completions, strict=True)],
                          self.max_length)


def _import(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"reward {spec!r} is neither a run folder nor 'module:function'", key="task.reward",
                          fix="e.g. reward: my_rewards:polite (a function in my_rewards.py), or runs/<reward-run>")
    if str(Path.cwd()) not in sys.path:  # a rewards.py next to the config is the common case
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for task.reward: {exc}", key="task.reward",
                          fix="put the module on PYTHONPATH or in the current directory") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"{module_name} has no function {attr!r}", key="task.reward",
                          fix=f"define def {attr}(prompts, completions, **columns) -> list[float] in {module_name}")
    return function


def load_reward(spec: str, kwargs: dict[str, Any], max_length: int) -> Callable[..., list[float]]:
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model" / "tuneforge.json").is_file():
            raise ConfigError(f"{path} holds no finished run", key="task.reward",
                              fix="train a reward model first (task: reward), then give its run folder")
        if kwargs:
            raise ConfigError("reward_kwargs only apply to reward functions", key="task.reward_kwargs",
                              fix="remove reward_kwargs when the reward is a run folder")
        return RunReward(path, max_length)
    return FunctionReward(_import(spec), spec, kwargs)


# ---- built-in reward functions (examples, and what the benchmarks use) ------------------------------------------
def mentions_word(prompts: list[str], completions: list[str], word: list[str] | str | None = None,
                  **_: Any) -> list[float]:
    """1.0 when the completion contains the word (case-insensitive), else 0.0. `word` is a data column (one word
    per prompt) or a single word given in reward_kwargs."""
    words = word if isinstance(word, list) else [word] * len(completions)
    if any(w is None for w in words):
        raise ConfigError("mentions_word needs a 'word' column or reward_kwargs: {word: ...}", key="task.reward_kwargs",
                          fix="add word: <text> under task.reward_kwargs")
    return [1.0 if str(w).lower() in c.lower() else 0.0 for w, c in zip(words, completions, strict=True)]


def length_in_range(prompts: list[str], completions: list[str], low: int = 20, high: int = 200,
                    **_: Any) -> list[float]:
    """1.0 inside [low, high] characters, falling off linearly outside (a format reward)."""
    def score(n: int) -> float:
        if low <= n <= high:
            return 1.0
        return max(0.0, 1.0 - (low - n) / low) if n < low else max(0.0, 1.0 - (n - high) / high)

    return [score(len(c)) for c in completions]
