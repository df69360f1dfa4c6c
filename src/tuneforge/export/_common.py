"""What every export kind shares: its error type, the export description file and sizes on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

EXPORT_META = "export.json"
KINDS = ("merged", "int8", "onnx", "gguf", "student")


class ExportError(TuneforgeError):
    """A run cannot be exported the way asked (wrong kind for its task, method or architecture)."""


def folder_size(path: Path) -> int:
    """Bytes on disk of every file under path (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_model_size(run: Any) -> int:
    """What serving the run needs on disk: its model folder, plus the base model when it saved only adapters."""
    size = folder_size(run.model_dir)
    if run.is_adapter:
        base = Path(run.base_model_path)
        size += sum(f.stat().st_size for f in base.glob("*.safetensors")) if base.is_dir() else 0
    return size


def export_meta(out: Path) -> dict[str, Any]:
    from tuneforge.registry.files import read_json

    meta_path = out / EXPORT_META
    if not meta_path.is_file():
        raise ExportError(f"{out} is not a tuneforge export ({EXPORT_META} missing)",
                          fix="give a folder written by `tuneforge export`")
    return read_json(meta_path)
