"""One loaded run: a finished run folder read back, with its model used as its task allows.

Every later stage (predict, generate, compare, serve, export, monitor) starts here, never from a live trainer and
never through another module's private helpers. The model is loaded on first use and can be released again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig, load_config
from tuneforge.errors import RunError
from tuneforge.registry.files import read_json

MODEL_META = "tuneforge.json"


@dataclass
class LoadedRun:
    """A finished run. `.model()` loads lazily; `.predict`, `.generate`, `.stream`, `.embed` as the task allows."""

    path: Path
    config: RunConfig
    metrics: dict[str, Any]
    meta: dict[str, Any]
    _task: Any = field(default=None, repr=False)
    _method: Any = field(default=None, repr=False)
    _loaded: Any = field(default=None, repr=False)

    # ---- what the run is --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def task(self) -> Any:
        if self._task is None:
            from tuneforge.tasks import TASKS

            cls = TASKS.get(self.meta["task"]["name"])
            self._task = cls(cls.Params.model_validate(self.meta["task"]))
        return self._task

    @property
    def method(self) -> Any:
        if self._method is None:
            from tuneforge.methods import METHODS

            cls = METHODS.get(self.meta["method"]["name"])
            self._method = cls(cls.Params.model_validate(self.meta["method"]))
        return self._method

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels", []))

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @property
    def is_adapter(self) -> bool:
        """True when the run saved only what its method trained (adapters over an unchanged base); embedding runs
        save the whole model (LoRA merged), whatever the method."""
        return bool(self.method.partial) and not self.task.saves_whole_model

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def base_model_path(self) -> str:
        """The base model the run was trained from, as a local folder ('default' resolved to the bundled MiniLM)."""
        base = self.meta["base_model"]
        if base == "default":
            from tuneforge.models.loading import default_model_path

            return str(default_model_path())
        return str(base)

    @property
    def base_revision(self) -> str | None:
        return self.meta.get("base_revision")

    @property
    def trust_remote_code(self) -> bool:
        return bool(self.meta.get("trust_remote_code", False))

    @property
    def generative(self) -> bool:
        return bool(self.task.generative)

    # ---- the model ----------------------------------------------------------------------------------------
    def loaded(self, device: str = "cpu") -> Any:
        """The LoadedModel (task, method, model, tokenizer, labels), loaded once and kept until `release()`."""
        if self._loaded is None:
            from tuneforge.registry.artifacts import load_model

            self._loaded = load_model(self.model_dir, device)
        return self._loaded

    def model(self, device: str = "cpu") -> Any:
        return self.loaded(device).model

    @property
    def tokenizer(self) -> Any:
        return self.loaded().tokenizer

    def release(self) -> None:
        """Free the model (the next use loads it again)."""
        self._loaded = None

    # ---- sharing one base between adapter runs (serving) ---------------------------------------------------
    def load_tokenizer(self) -> Any:
        """The run's saved tokenizer, without loading the model."""
        from tuneforge.models.loading import load_tokenizer

        return load_tokenizer(str(self.model_dir), self.trust_remote_code)

    def build_base(self, device: str = "cpu") -> Any:
        """The unchanged base model this run's adapters go on (with the task's head), as `load_model` builds it."""
        tokenizer = self.load_tokenizer()
        same_base = {"trust_remote_code": self.trust_remote_code,
                     **({"revision": self.base_revision} if self.base_revision else {})}
        import torch

        # As load_model: quantised bases (qlora) need a GPU; on CPU the adapters run on the full-precision base.
        extra = self.method.load_kwargs() if torch.cuda.is_available() else {}
        base = self.task.build_model(self.base_model_path, self.labels, pad_token_id=tokenizer.pad_token_id,
                                     **same_base, **extra)
        return base.to(device).eval()

    def share(self, model: Any, tokenizer: Any | None = None) -> None:
        """Use `model` (e.g. one PEFT model holding several runs' adapters) instead of loading this run's own.

        The caller makes this run's adapter the active one before each use; `release()` drops the reference."""
        from tuneforge.registry.artifacts import LoadedModel

        self._loaded = LoadedModel(self.task, self.method, model, tokenizer or self.load_tokenizer(), self.labels,
                                   self.max_length, self.meta)

    def chat_template(self) -> tuple[str, str]:
        """(name, template) the run trained with; generative runs only."""
        self._require_generative("chat templates")
        return self.task.chat_template(self.tokenizer)

    # ---- using it -----------------------------------------------------------------------------------------
    def predict(self, inputs: list[Any], batch_size: int = 64) -> list[dict[str, Any]]:
        loaded = self.loaded()
        return self.task.predict(loaded.model, loaded.tokenizer, inputs, self.labels, self.max_length, batch_size)

    def generate(self, messages: list[dict[str, str]], *, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1, seed: int | None = None, stop: list[str] | None = None) -> list[str]:
        """`n` replies to one conversation with the run's saved chat template (temperature 0: greedy)."""
        from tuneforge.tasks._generation import GenerationSettings, generate_replies

        self._require_generative("generation")
        loaded = self.loaded()
        settings = GenerationSettings(max_new_tokens, temperature, top_p, n, seed, tuple(stop or ()))
        return generate_replies(loaded.model, loaded.tokenizer, messages, self._template_choice(), settings)

    def generate_batch(self, conversations: list[list[dict[str, str]]], *, max_new_tokens: int = 256,
                       stop: list[str] | None = None) -> list[str]:
        """One greedy reply per conversation, generated together (left padding); same text as `generate` alone."""
        from tuneforge.tasks._generation import generate_replies_batch

        self._require_generative("generation")
        loaded = self.loaded()
        return generate_replies_batch(loaded.model, loaded.tokenizer, conversations, self._template_choice(),
                                      max_new_tokens, tuple(stop or ()))

    def stream(self, messages: list[dict[str, str]], *, max_new_tokens: int = 256,
               temperature: float = 0.0) -> Iterator[str]:
        from tuneforge.tasks._generation import stream_reply

        self._require_generative("generation")
        loaded = self.loaded()
        return stream_reply(loaded.model, loaded.tokenizer, messages, self._template_choice(), max_new_tokens,
                            temperature)

    def embed(self, texts: list[str], batch_size: int = 64) -> Any:
        """L2-normalised sentence vectors from the run's encoder, pooled as it was trained (mean or [CLS])."""
        from tuneforge.evaluation.embeddings import encoder_of, pooled_embeddings

        if self.generative:
            raise RunError(f"run {self.name} is a {self.task.name} run; embeddings come from encoder runs",
                           fix="use a classification, token-classification or embedding run, or the default model")
        loaded = self.loaded()
        own = self.task.embed(loaded.model, loaded.tokenizer, texts, self.max_length, batch_size)
        if own is not None:  # e.g. a sentence-transformers model (embedding runs)
            return own
        encoder, mean = encoder_of(loaded.model)
        return pooled_embeddings(encoder, loaded.tokenizer, texts, self.max_length, batch_size, mean=mean)

    def _template_choice(self) -> str:
        return getattr(self.task.params, "chat_template", "auto")

    def _require_generative(self, what: str) -> None:
        if not self.generative:
            raise RunError(f"run {self.name} is a {self.task.name} run; {what} needs a generative run",
                           fix=f'use `tuneforge predict {self.path} "text"`')


def load_run(path: str | Path) -> LoadedRun:
    """Read a finished run folder (config, metrics, saved model description); the model loads on first use."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise RunError(f"{path} is not a run folder (no config.yaml)", fix="see `tuneforge runs list`")
    if not (path / "metrics.json").is_file():
        raise RunError(f"run {path} has not finished", fix=f"resume it: tuneforge train {path}/config.yaml --resume")
    meta_path = path / "model" / MODEL_META
    if not meta_path.is_file():
        raise RunError(f"{path / 'model'} holds no trained model ({MODEL_META} missing)",
                       fix="give a finished run folder (see `tuneforge runs list`)")
    return LoadedRun(path, load_config(path / "config.yaml"), read_json(path / "metrics.json"), read_json(meta_path))
