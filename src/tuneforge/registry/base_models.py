"""The workspace's catalogue of base models: names for local Hugging Face folders and GGUF files.

Fine-tuning jobs name their base by catalogue name (`model: "smollm"`); `resolve_base` turns it into the string a
run config's `model.path` takes. Stored in WORKSPACE/.tuneforge/base_models.json (written atomically). Each path is
checked when added (a missing path, a folder that transformers cannot read, a file that is not GGUF: a ModelError
naming the path) and again when resolved (it may have moved since). `default` is always the bundled MiniLM encoder
and cannot be added, overwritten or removed.

Base models are listed by `/v1/models` (owned_by "tuneforge-base") so clients can see what to fine-tune; the server
does not answer inference requests with them (it serves finished runs).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import ModelError, TuneforgeError
from tuneforge.registry.files import write_json

CATALOGUE_FILE = Path(".tuneforge") / "base_models.json"
DEFAULT_BASE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # no ':' or '/': names go into ft:{base}:... ids
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json")


class BaseModelError(TuneforgeError):
    """A catalogue request that cannot be done: a bad or taken name, an unknown name."""


@dataclass(frozen=True)
class BaseModel:
    name: str
    path: str  # absolute; "default" for the bundled MiniLM
    kind: str  # "hf_dir" | "gguf" | "bundled"
    added: int  # unix seconds (0 for default)


def catalogue_path(workspace: str | Path) -> Path:
    return Path(workspace) / CATALOGUE_FILE


def _read(workspace: str | Path) -> dict[str, dict[str, object]]:
    path = catalogue_path(workspace)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data["models"]
        if not isinstance(models, dict):
            raise TypeError("models is not an object")
        return models
    except (ValueError, KeyError, TypeError) as exc:
        raise BaseModelError(f"{path}: damaged base-model catalogue ({exc})",
                             fix=f"repair or delete {path} and add the models again") from None


def _check_hf_folder(path: Path) -> None:
    """A folder transformers can load: config.json it can parse, safetensors weights, tokenizer files."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json, so it is not a Hugging Face model folder",
                         fix="give the folder that holds config.json and the weights, or a .gguf file")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.safetensors.index.json")):
        raise ModelError(f"{path} has no .safetensors weights",
                         fix="convert the weights to safetensors (pickled .bin files are not loaded)")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelError(f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})",
                         fix="save the tokenizer into the folder (tokenizer.save_pretrained(folder))")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # any config transformers refuses (bad JSON, unknown type, inconsistent sizes)
        cause = exc.__cause__ or exc  # huggingface_hub wraps a config's ValueError: show the reason itself
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ModelError(f"{path}: transformers cannot read its config.json ({first})",
                         fix="check the folder holds a complete model saved with save_pretrained") from None


def check_model_path(path: str | Path) -> tuple[Path, str]:
    """(absolute path, kind) of a usable base: a GGUF file (or a folder holding exactly one) or an HF folder."""
    from tuneforge.models.gguf import GGUF_MAGIC, find_gguf

    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{p} does not exist", fix="give a local Hugging Face model folder or a .gguf file")
    gguf = find_gguf(p)
    if gguf is not None:
        with gguf.open("rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise ModelError(f"{gguf} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                             fix="give a .gguf file written by llama.cpp / the gguf package, or a model folder")
        return gguf.resolve(), "gguf"
    if not p.is_dir():
        raise ModelError(f"{p} is neither a model folder nor a .gguf file",
                         fix="give a local Hugging Face model folder or a .gguf file")
    _check_hf_folder(p)
    return p.resolve(), "hf_dir"


def add(workspace: str | Path, name: str, path: str | Path) -> BaseModel:
    """Add (or re-point) `name`; the path is checked first. `default` and names of the workspace's runs are taken."""
    if name == DEFAULT_BASE:
        raise BaseModelError("'default' is the bundled MiniLM and cannot be overwritten",
                             fix="choose another name")
    if not _NAME.match(name):
        raise BaseModelError(f"base model name {name!r} is not allowed",
                             fix="use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    if (Path(workspace) / name).is_dir():  # run folders are named after their runs: one name, one model
        raise BaseModelError(f"{name!r} is already a folder (a run) in {workspace}", fix="choose a name no run has")
    resolved, kind = check_model_path(path)
    models = _read(workspace)
    added = int(time.time())
    models[name] = {"path": str(resolved), "kind": kind, "added": added}
    write_json(catalogue_path(workspace), {"models": models})
    return BaseModel(name, str(resolved), kind, added)


def remove(workspace: str | Path, name: str) -> None:
    if name == DEFAULT_BASE:
        raise BaseModelError("'default' is the bundled MiniLM and cannot be removed", fix="remove another name")
    models = _read(workspace)
    if name not in models:
        raise _unknown(workspace, name, models)
    del models[name]
    write_json(catalogue_path(workspace), {"models": models})


def list_bases(workspace: str | Path) -> list[BaseModel]:
    """`default` first, then the catalogue's models by name."""
    entries = [BaseModel(DEFAULT_BASE, DEFAULT_BASE, "bundled", 0)]
    for name, entry in sorted(_read(workspace).items()):
        entries.append(BaseModel(name, str(entry["path"]), str(entry["kind"]), int(str(entry.get("added", 0)))))
    return entries


def resolve_base(workspace: str | Path, name: str) -> str:
    """What a run config's `model.path` takes for catalogue name `name` ("default" stays "default"); the path is
    checked again (it may have moved since it was added)."""
    if name == DEFAULT_BASE:
        return DEFAULT_BASE
    models = _read(workspace)
    if name not in models:
        raise _unknown(workspace, name, models)
    path = str(models[name]["path"])
    try:
        check_model_path(path)
    except ModelError as err:
        raise ModelError(f"base model {name!r}: {err.message}",
                         fix=f"put it back, or re-add it: tuneforge models add {name} NEW_PATH") from None
    return path


def is_base(workspace: str | Path, name: str) -> bool:
    return name == DEFAULT_BASE or name in _read(workspace)


def _unknown(workspace: str | Path, name: str, models: dict[str, dict[str, object]]) -> BaseModelError:
    known = ", ".join([DEFAULT_BASE, *sorted(models)])
    return BaseModelError(f"no base model {name!r} in {workspace} (known: {known})",
                          fix=f"add it: tuneforge models add {name} PATH --workspace {workspace}")
