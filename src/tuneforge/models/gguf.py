"""GGUF files as `model.path`: converted once to an ordinary Hugging Face folder, cached by the file's sha256.

Users bring llama.cpp GGUF files. transformers reads them (`gguf_file=`), dequantising every tensor, but that takes
tens of seconds for a 100M-parameter model and a model loaded that way refuses `save_pretrained`. So the first run
converts the file into a float32 safetensors folder (config, weights, tokenizer with its chat template) under
`<output_dir>/.cache/gguf/<sha256>/`; every later run, and every stage of the same run, loads that folder in seconds.
The key is the content hash, so a renamed or moved copy hits the cache and an edited file does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError

GGUF_MAGIC = b"GGUF"
SOURCE_FILE = "tuneforge_gguf.json"  # written last in each cache folder: marks it complete, names its source
CACHE_SUBDIR = Path(".cache") / "gguf"

# (resolved path, size, mtime_ns) -> sha256: resolve_model_path runs several times per run; hash a file once.
_SHA_MEMO: dict[tuple[str, int, int], str] = {}
# How many times a GGUF was converted in this process: tests use it to prove the second load hit the cache.
conversions = 0


def find_gguf(path: Path) -> Path | None:
    """The GGUF file `model.path` names: the path itself, or the only .gguf in a folder without config.json."""
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"model.path {str(path)!r}: GGUF file does not exist",
                             fix="check the path, or point model.path at the folder holding the .gguf file")
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ModelError(f"model.path {str(path)!r} holds several GGUF files ({names})",
                         fix="set model.path to the one .gguf file to use")
    return found[0] if found else None


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _SHA_MEMO[key] = digest.hexdigest()
    return _SHA_MEMO[key]


def _check_header(path: Path) -> None:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"model.path {str(path)!r} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                         fix="give a .gguf file written by llama.cpp / the gguf package, or a Hugging Face folder")


def gguf_model_folder(gguf: Path, output_dir: str | Path) -> str:
    """The cached Hugging Face folder for this GGUF file, converting it first if this content was never seen."""
    gguf = gguf.resolve()
    _check_header(gguf)
    sha = file_sha256(gguf)
    cache = Path(output_dir).expanduser().resolve() / CACHE_SUBDIR
    target = cache / sha
    if (target / SOURCE_FILE).is_file():
        return str(target)
    # Convert into a private staging folder and rename it into place: a run killed half-way, or two runs converting
    # the same file at once, never leave a half-written folder where the next run would take it as complete.
    staging = cache / f".staging-{sha[:16]}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        _convert(gguf, staging)
        (staging / SOURCE_FILE).write_text(json.dumps({"gguf_path": str(gguf), "gguf_sha256": sha}, indent=2) + "\n")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantise to float32 and save config + safetensors + tokenizer (chat template included) in `out`."""
    global conversions
    try:
        import gguf as _gguf_package  # noqa: F401 - transformers needs it; fail here with the install hint
    except ImportError:
        raise ModelError(f"model.path {str(gguf)!r} is a GGUF file, and reading it needs the `gguf` package",
                         fix="pip install 'tuneforge[generative]' (or pip install gguf)") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor tqdm bar would flood the run's console and logs
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError, struct.error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read the GGUF file {str(gguf)!r}: {first}",
                         fix="the file may be truncated or of an architecture transformers cannot read; "
                             "re-download or re-export it") from None
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    _save_plain_copy(loaded, out)
    tokenizer.save_pretrained(str(out))
    conversions += 1


def _save_plain_copy(loaded: Any, out: Path) -> None:
    """transformers refuses `save_pretrained` on a model read from GGUF (it carries a quantisation config), so build
    a fresh model from the same config without it and copy the dequantised weights in."""
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    if loaded.generation_config is not None:
        fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(out), safe_serialization=True)


def gguf_lineage(model_path: str, output_dir: str | Path) -> dict[str, str] | None:
    """The GGUF file and sha256 behind `model.path`, or None when it names no GGUF (hub ids, plain folders)."""
    if model_path == "default":
        return None
    path = Path(model_path).expanduser()
    try:
        gguf = find_gguf(path) if path.exists() or path.suffix.lower() == ".gguf" else None
    except ModelError:
        return None
    if gguf is None:
        return None
    return {"gguf_path": str(gguf.resolve()), "gguf_sha256": file_sha256(gguf),
            "converted_to": str(Path(output_dir).expanduser().resolve() / CACHE_SUBDIR / file_sha256(gguf))}
