"""Checkpoints: written atomically (staging folder + rename), found and checked before a resume."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from tuneforge.errors import CheckpointError, TrainingDiverged

_CKPT = re.compile(r"^checkpoint-(\d+)$")
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")  # + rng_state*.pth: one per process
CHECKSUMS = "checksums.json"


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """sha256 and size of every file of a checkpoint, written into it before it is renamed into place."""
    files = {p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKSUMS}
    with open(folder / CHECKSUMS, "w", encoding="utf-8") as fh:
        json.dump(files, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def verify_checksums(path: Path) -> None:
    """Every file a checkpoint recorded is there, with its size and sha256 (a flipped byte is refused)."""
    manifest = path / CHECKSUMS
    if not manifest.is_file():
        return  # written by an older tuneforge: the structural checks below still apply
    try:
        files = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{manifest} is not valid JSON (truncated?)",
                              fix=f"delete {path} to resume from the previous checkpoint") from None
    for rel, expected in files.items():
        file = path / rel
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {rel} is missing",
                                  fix=f"delete {path} to resume from the previous checkpoint")
        if file.stat().st_size != expected["bytes"]:
            raise CheckpointError(f"{file} is truncated ({file.stat().st_size} of {expected['bytes']} bytes)",
                                  fix=f"delete {path} to resume from the previous checkpoint")
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"{file} is corrupted (its sha256 differs from the one recorded at save time)",
                                  fix=f"delete {path} to resume from the previous checkpoint")


def save_failed(root: Path, name: str, exc: OSError) -> CheckpointError:
    """The error for a checkpoint that could not be written, naming the checkpoint that is still intact."""
    import errno

    previous = list_checkpoints(root)
    kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return CheckpointError(f"could not write {name} ({why}); nothing was overwritten and {kept}",
                           fix="free disk space (or set training.save_total_limit lower), then "
                               "`tuneforge train CONFIG --resume`")


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CKPT.match(p.name)]
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))  # type: ignore[union-attr]


def check_checkpoint(path: Path) -> None:
    """Raise CheckpointError naming the damaged file if the checkpoint cannot be resumed from."""
    verify_checksums(path)
    for name in REQUIRED:
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing",
                                  fix=f"delete {path} to resume from the previous checkpoint")
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path / 'trainer_state.json'} is not valid JSON (truncated?)",
                              fix=f"delete {path} to resume from the previous checkpoint") from None
    if not list(path.glob("rng_state*.pth")):
        raise CheckpointError(f"checkpoint {path} is incomplete: rng_state.pth is missing",
                              fix=f"delete {path} to resume from the previous checkpoint")
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
    for file in [path / "optimizer.pt", path / "scheduler.pt", *path.glob("rng_state*.pth")]:
        if file.stat().st_size == 0:
            raise CheckpointError(f"{file} is empty (truncated)",
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


def diverged(loss: Any, state: Any, micro_batch: int, inputs: dict[str, Any], root: Path) -> TrainingDiverged:
    """The error for a NaN/inf loss: which optimiser step and micro-batch, its shape, and the checkpoint to go
    back to (nothing after it was saved)."""
    previous = list_checkpoints(root)
    ids = inputs.get("input_ids")
    shape = f", batch shape {tuple(ids.shape)}" if ids is not None else ""
    kept = f"the last good checkpoint is {previous[-1]}" if previous else "no checkpoint had been written yet"
    return TrainingDiverged(f"training loss became {float(loss.detach().float().mean())} at step "
                            f"{state.global_step + 1} (micro-batch {micro_batch} of this run, epoch "
                            f"{state.epoch or 0:.2f}{shape}); {kept}",
                            fix="lower training.learning_rate (or check that batch's data), then `--resume`")
