"""Checkpoints: written atomically (staging folder + rename), found and checked before a resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tuneforge.errors import CheckpointError

_CKPT = re.compile(r"^checkpoint-(\d+)$")
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CKPT.match(p.name)]
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))  # type: ignore[union-attr]


def check_checkpoint(path: Path) -> None:
    """Raise CheckpointError naming the damaged file if the checkpoint cannot be resumed from."""
    for name in REQUIRED:
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing",
                                  fix=f"delete {path} to resume from the previous checkpoint")
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path / 'trainer_state.json'} is not valid JSON (truncated?)",
                              fix=f"delete {path} to resume from the previous checkpoint") from None
    weights = list(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"checkpoint {path} holds no .safetensors weights",
                              fix=f"delete {path} to resume from the previous checkpoint")
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                    handle.get_slice(key)
            expected = _safetensors_size(file)
        except Exception as exc:
            raise CheckpointError(f"{file} is damaged ({exc})",
                                  fix=f"delete {path} to resume from the previous checkpoint") from None
        if file.stat().st_size < expected:
            raise CheckpointError(f"{file} is truncated ({file.stat().st_size} of {expected} bytes)",
                                  fix=f"delete {path} to resume from the previous checkpoint")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        if (path / name).stat().st_size == 0:
            raise CheckpointError(f"{path / name} is empty (truncated)",
                                  fix=f"delete {path} to resume from the previous checkpoint")


def _safetensors_size(file: Path) -> int:
    """Bytes a safetensors file must have: 8-byte header length + header + the largest data offset."""
    with open(file, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return 8 + header_len + end


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    if not found:
        return None
    check_checkpoint(found[-1])
    return found[-1]
