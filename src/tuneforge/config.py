"""Run configuration: one YAML file per run, validated once by pydantic into a frozen `RunConfig`.

Unknown keys are rejected with the nearest valid key suggested (see `config_errors.py`). Method and task sections are
discriminated unions built from the registered plug-ins, so a new method file adds its own config fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tuneforge.config_base import Strict
from tuneforge.config_data import (  # noqa: F401  (the data section, in its own file; importable from here)
    AugmentConfig,
    CleanConfig,
    ColumnsConfig,
    DataConfig,
    ParaphraseConfig,
    SplitConfig,
)
from tuneforge.errors import ConfigError
from tuneforge.methods import METHODS
from tuneforge.tasks import TASKS


class ModelConfig(Strict):
    path: str = Field("default", description="Local model folder, a .gguf file (or a folder holding one), a hub id, "
                                 "or 'default' (bundled all-MiniLM-L6-v2).")
    revision: str | None = Field(None, description="Hub revision (only with allow_hub).")
    allow_hub: bool = Field(False, description="Allow downloading from the Hugging Face hub. Off: nothing leaves.")
    trust_remote_code: bool = False
    from_run: str | None = Field(None, description="A finished run folder to continue training from: a full "
                                 "fine-tune starts from its saved model, an adapter run (lora, ...) from the same "
                                 "base with its adapter, which keeps training; the run's labels and head are kept "
                                 "(training/continuation.py). model.path is then taken from that run.")


class EarlyStoppingConfig(Strict):
    metric: str = Field("auto", description="Validation metric to watch ('auto': the task's primary metric).")
    patience: int | None = Field(3, ge=1, description="Evaluations without improvement before stopping; null: off.")
    min_delta: float = Field(0.0, ge=0)


class OverfitConfig(Strict):
    patience: int = Field(3, ge=2, description="Evaluations of rising val loss while train loss falls.")
    stop: bool = Field(False, description="Stop training when overfitting is detected (else warn).")


class TrainingConfig(Strict):
    learning_rate: float | None = Field(None, gt=0, description="None: the method's default.")
    batch_size: int = Field(32, ge=1)
    batch_tokens: int | None = Field(
        None, ge=1, description="Tasks that pack rows (sft with task.packing): tokens per micro-batch instead of a "
                                "row count; batch_size becomes batch_tokens // data.max_length packed rows (at least "
                                "1). Unset, with batch_size unset too, such tasks default to 2048 tokens.")
    eval_batch_size: int = Field(128, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Overrides epochs when set.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "polynomial"] = "linear"
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps; None: once per epoch.")
    save_total_limit: int = Field(2, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    overfit: OverfitConfig = OverfitConfig()
    group_by_length: bool = Field(True, description="Bucket similar lengths together: less padding, faster.")
    restore_best: bool = True
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: all cores).")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    sharding: Literal["ddp", "fsdp", "zero2", "zero3"] = Field(
        "ddp", description="With --processes N: ddp (a full copy per process), fsdp (FSDP2 through accelerate) or "
                           "DeepSpeed ZeRO-2/3 (needs the deepspeed package); fsdp and zero need CUDA GPUs.")
    fast_path: Literal["auto", "off", "require"] = Field(
        "auto", description="GPU fast path for packed causal-LM training (flash/flex attention, liger kernels, "
                            "compiled layers, memory-chosen checkpointing); auto falls back with a log line, "
                            "require makes a fallback an error.")
    class_weights: bool = Field(False, description="Weight the loss by inverse class frequency (imbalance).")
    refit: bool = Field(False, description="After early stopping has chosen the step count on validation, train "
                                           "again from the start on train + validation for that many steps and "
                                           "keep that model (training/refit.py).")


class TrackingConfig(Strict):
    mlflow: bool = True
    tracking_uri: str | None = Field(None, description="None: MLFLOW_TRACKING_URI, else SQLite in the output dir.")
    experiment: str = "tuneforge"
    register_model: bool = True
    registered_name: str | None = Field(None, description="Model registry name (None: the run name).")


class EvaluationConfig(Strict):
    baselines: list[str] | Literal["auto"] = Field(
        "auto", description="Base-model baselines measured in the same run. 'auto': the task's own "
                            "(classification: linear_probe, zero_shot; NER: linear_probe; sft: base_model); "
                            "[] for none.")


class CompareConfig(Strict):
    """`tuneforge compare`: fine-tuned runs against prompt-engineering and retrieval baselines on one test split."""

    runs: list[str] = Field([], description="Finished run folders to compare (any method) on this config's test split.")
    few_shot_k: int = Field(4, ge=1, le=64, description="Demonstrations per query, chosen by embedding similarity.")
    rag_k: int = Field(10, ge=1, le=256, description="Neighbours (classification) or passages (generation) retrieved.")
    documents: str | None = Field(None, description="Folder of .txt/.md documents to retrieve from (generation); "
                                                    "None: the training data.")
    label_descriptions: dict[str, str] = Field({}, description="Label -> description for zero-shot "
                                                               "(default: the label name made readable).")
    instruction: str | None = Field(None, description="Task description put before every prompt (zero-shot, "
                                                      "few-shot, RAG prompts of generative tasks).")
    combine: bool = Field(True, description="Also measure each fine-tuned run combined with retrieval.")
    bootstrap_samples: int = Field(1000, ge=100, description="Resamples for the confidence intervals.")
    permutations: int = Field(2000, ge=100, description="Resamples of the paired significance test.")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    latency_examples: int = Field(50, ge=5, description="Test examples timed one at a time for p50/p95 latency.")


class SearchRange(Strict):
    """One searched hyperparameter: a numeric range (low/high, optionally log-scaled) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0, description="Quantise the range (integers: step 1).")
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices is empty")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a range needs low < high (or give choices)")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SweepConfig(Strict):
    """`tuneforge sweep`: an Optuna study over config keys; every trial is a normal recorded run."""

    params: dict[str, SearchRange] = Field({}, description="Dotted config key -> range, e.g. "
                                                           "training.learning_rate: {low: 1e-5, high: 1e-3, log: true}")
    trials: int = Field(20, ge=1, description="Trials in the study (shared by all workers).")
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = Field("median", description="Stop weak trials from their validation curve.")
    startup_trials: int = Field(5, ge=0, description="Trials run in full before pruning and TPE start.")
    pruner_warmup: int = Field(0, ge=0, description="Evaluations every trial gets before the pruner may stop it "
                                                    "(raise it when warm-up is searched: slow starters look weak).")
    workers: int = Field(1, ge=1, description="Parallel worker processes sharing one study.")
    storage: str | None = Field(None, description="Optuna storage URL (PostgreSQL for several machines); "
                                                  "None: a SQLite file in the sweep folder.")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")


def _plugin_union(registry: Any) -> Any:
    classes = tuple(cls.Params for cls in registry)
    return Annotated[Union[classes], Field(discriminator="name")]  # noqa: UP007 - built at runtime


TaskConfig = _plugin_union(TASKS)
MethodConfig = _plugin_union(METHODS)


PACKED_BATCH_TOKENS = 2048  # sft's default micro-batch: see docs/bench/sft_time_to_quality.md


class RunConfig(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run folder name.")
    output_dir: str = Field("runs", description="Workspace holding run folders and the MLflow store.")
    plugins: list[str] = Field(default_factory=list, description="Your own task or method files, imported before "
                               "the rest is read: module names or .py paths, each registering itself with "
                               "@TASKS.register / @METHODS.register.")
    model: ModelConfig = ModelConfig()
    data: DataConfig
    task: TaskConfig  # type: ignore[valid-type]
    method: MethodConfig = Field(default_factory=lambda: METHODS.get("lora").Params(name="lora"))  # type: ignore
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    compare: CompareConfig = CompareConfig()
    sweep: SweepConfig = SweepConfig()

    @field_validator("task", "method", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `method: lora` is shorthand for `method: {name: lora}`.
        return {"name": value} if isinstance(value, str) else value

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def learning_rate(self) -> float:
        return self.training.learning_rate or type(self.method).default_learning_rate

    @model_validator(mode="after")
    def _batch_in_tokens(self) -> RunConfig:
        # A packed row is data.max_length tokens whatever the examples' lengths, so a row count set for unpacked
        # examples would make far fewer, far larger steps: packed tasks size their batch in tokens.
        t, packs = self.training, bool(getattr(self.task, "packing", False))
        if t.batch_tokens is None and packs and not {"batch_size", "batch_tokens"} & t.model_fields_set:
            t = t.model_copy(update={"batch_tokens": PACKED_BATCH_TOKENS})
        if t.batch_tokens is None:
            return self
        if not packs:
            from pydantic_core import PydanticCustomError

            raise PydanticCustomError("config_key", "{message}", {
                "key": "training.batch_tokens", "fix": "set training.batch_size instead",
                "message": f"needs a task that packs rows (sft with task.packing: true); task {self.task.name!r} "
                           "batches whole examples"})
        rows = max(1, t.batch_tokens // self.data.max_length)
        object.__setattr__(self, "training", t.model_copy(update={"batch_size": rows}))  # frozen: set once, here
        return self


def parse_config(raw: Any, source: str | Path = "<config>") -> RunConfig:
    from tuneforge.config_errors import explain_validation_error
    from tuneforge.plugins import import_plugins

    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping of keys (model, data, task, method, training, ...)",
                          file=source, fix="see `tuneforge config init`")
    import_plugins(raw.get("plugins") or [], source)
    model = config_model()
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise explain_validation_error(exc, raw, source, model) from None


_BUILT_IN = (tuple(TASKS.names()), tuple(METHODS.names()))
_WITH_PLUGINS: dict[tuple[tuple[str, ...], tuple[str, ...]], type[RunConfig]] = {}


def config_model() -> type[RunConfig]:
    """RunConfig, or (once plug-ins registered more tasks or methods) a subclass whose task and method sections
    accept them too: the unions are built from the registries as they are now."""
    key = (tuple(TASKS.names()), tuple(METHODS.names()))
    if key == _BUILT_IN:
        return RunConfig
    if key not in _WITH_PLUGINS:
        from pydantic import create_model

        _WITH_PLUGINS[key] = create_model(  # type: ignore[call-overload]
            "RunConfig", __base__=RunConfig, task=(_plugin_union(TASKS), ...),
            method=(_plugin_union(METHODS), Field(default_factory=lambda: METHODS.get("lora").Params(name="lora"))))
    return _WITH_PLUGINS[key]


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply a `--set a.b.c=value` override; the value is parsed as YAML (so 3, 1e-4, true work)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not KEY=VALUE", fix="e.g. --set training.epochs=1")
    key, _, value = assignment.partition("=")
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("task", "method"):
            child = {"name": child}
        node[part] = child if isinstance(child, dict) else {}
        node = node[part]
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override value {value!r} is not valid YAML", key=key.strip(),
                          fix="quote strings, e.g. --set name='\"my run\"'") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=path,
                          fix="check the path, or create one with `tuneforge config init`")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=path, fix="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}",
                          fix="check indentation and quoting on that line") from None
    raw = {} if raw is None else raw
    for assignment in overrides or []:
        if isinstance(raw, dict):
            set_override(raw, assignment)
    return parse_config(raw, path)


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """Local paths made absolute (relative ones are relative to the current directory), so a run folder's saved
    config works from anywhere. Hub names and 'default' are left alone."""

    def fix(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [fix(v) for v in value]
        p = Path(value).expanduser()
        return str(p.resolve()) if p.exists() else value

    augment = cfg.data.augment
    if augment is not None and augment.paraphrase is not None:  # the paraphrasing run is a local folder too
        augment = augment.model_copy(update={"paraphrase": augment.paraphrase.model_copy(
            update={"run": fix(augment.paraphrase.run)})})
    data = cfg.data.model_copy(update={"train": fix(cfg.data.train), "validation": fix(cfg.data.validation),
                                       "test": fix(cfg.data.test), "augment": augment})
    model = cfg.model.model_copy(update={"path": fix(cfg.model.path) if cfg.model.path != "default" else "default",
                                         "from_run": fix(cfg.model.from_run)})
    task = cfg.task.model_copy(update={f: fix(getattr(cfg.task, f)) for f in cfg.task.path_fields})
    compare = cfg.compare.model_copy(update={"runs": fix(cfg.compare.runs), "documents": fix(cfg.compare.documents)})
    plugins = [fix(p) if p.endswith(".py") else p for p in cfg.plugins]
    return cfg.model_copy(update={"data": data, "model": model, "task": task, "compare": compare,
                                  "plugins": plugins, "output_dir": str(Path(cfg.output_dir).expanduser().resolve())})


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
