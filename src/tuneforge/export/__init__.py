"""Ship a finished run smaller and faster: merged weights, int8, ONNX, GGUF, each measured against the run.

`export_run(run_folder, to=...)` starts from the loaded run (registry/loaded_run.py), writes the export folder with
`export.json` (kind, files, lineage to the run) and `report.md`/`report.html` (export vs run table), and records it
in MLflow when the run was tracked there. `load_export(folder)` reads an export back as a model tasks can call.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.export._common import EXPORT_META, KINDS, ExportError, export_meta, folder_size, run_model_size

__all__ = ["KINDS", "ExportError", "ExportResult", "LoadedExport", "export_run", "load_export"]
QUANTIZE = {"merged": (None,), "int8": (None, "int8"), "onnx": (None, "int8"), "gguf": (None, "f16", "q8_0"),
            "student": (None,)}


@dataclass
class ExportResult:
    out: Path
    info: dict[str, Any]
    figures: dict[str, Any]


@dataclass
class LoadedExport:
    """An export read back: `model` is called like the run's torch model (`model(**enc).logits`)."""

    model: Any
    tokenizer: Any
    meta: dict[str, Any]


def _check_request(to: str, quantize: str | None) -> None:
    if to not in KINDS:
        raise ExportError(f"unknown export kind {to!r}", fix=f"use --to {'|'.join(KINDS)}")
    if quantize not in QUANTIZE[to]:
        allowed = ", ".join(q for q in QUANTIZE[to] if q) or "none"
        raise ExportError(f"--quantize {quantize} does not apply to --to {to}",
                          fix=f"--to {to} takes --quantize {allowed}" if allowed != "none" else "drop --quantize")


def _write(run: Any, to: str, quantize: str | None, out: Path, student_config: Path | None) -> dict[str, Any]:
    if to == "student":
        from tuneforge.export.student import export_student

        return export_student(run, out, student_config)
    if to == "merged":
        from tuneforge.export.merge import export_merged

        return export_merged(run, out)
    if to == "int8":
        from tuneforge.export.quantize import export_int8

        return export_int8(run, out)
    if to == "onnx":
        from tuneforge.export.evaluate import test_examples
        from tuneforge.export.onnx import export_onnx

        sample = [e.get("tokens", e.get("text")) for e in test_examples(run, 2)] or ["hello world", "a test"]
        return export_onnx(run, out, quantize, sample)
    from tuneforge.export.gguf import export_gguf

    return export_gguf(run, out, quantize)


def _lineage(run: Any) -> dict[str, Any]:
    from tuneforge.registry.run_folder import read_status

    return {"path": str(run.path.resolve()), "name": run.name, "task": run.meta["task"],
            "method": run.meta["method"], "labels": run.labels, "max_length": run.max_length,
            "base_model": run.meta["base_model"], "base_revision": run.base_revision,
            "test_metrics": run.metrics.get("test", {}), "tracking": read_status(run.path).get("tracking") or {}}


def export_run(run_folder: str | Path, to: str, quantize: str | None = None, out: str | Path | None = None,
               *, measure: bool = True, limit: int | None = None, threads: int | None = None,
               student_config: str | Path | None = None) -> ExportResult:
    """Write the export, measure it against the run (unless measure=False) and record it. `student_config`: the
    student's run config for to="student" (export/student.py)."""
    import tuneforge
    from tuneforge.registry.files import write_json
    from tuneforge.registry.loaded_run import load_run

    _check_request(to, quantize)
    run = load_run(run_folder)
    out_dir = Path(out) if out else run.path / "exports" / (to + (f"-{quantize}" if quantize else ""))
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / EXPORT_META).is_file():
        # only an earlier export is replaced: never a run folder or someone's other files
        raise ExportError(f"{out_dir} exists and is not a tuneforge export", fix="give an empty or new --out folder")
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    info = {"kind": to, "quantize": quantize,
            **_write(run, to, quantize, staging, Path(student_config) if student_config else None)}
    info.update(created=time.time(), tuneforge_version=tuneforge.__version__, run=_lineage(run))
    write_json(staging / EXPORT_META, info)
    shutil.rmtree(out_dir, ignore_errors=True)  # an export is derived from the run: writing it again replaces it
    staging.rename(out_dir)
    figures = measure_export(run, out_dir, limit=limit, threads=threads) if measure else {}
    if figures:
        from tuneforge.export.evaluate import write_report

        info["evaluation"] = figures
        write_report(out_dir, run, info, figures)
    info["tracking"] = record_in_mlflow(run, out_dir, info)
    write_json(out_dir / EXPORT_META, info)
    return ExportResult(out_dir, info, figures)


def measure_export(run: Any, out: Path, limit: int | None = None, threads: int | None = None) -> dict[str, Any]:
    from tuneforge.export.evaluate import Side, compare

    exported = load_export(out, threads=threads)
    size = folder_size(out) - sum(folder_size(out / f) for f in ("report.md", "report.html", EXPORT_META)
                                  if (out / f).exists())
    if exported.meta["kind"] == "student":  # what serving it needs, not its run folder's checkpoints and plots
        from tuneforge.registry.loaded_run import load_run

        size = run_model_size(load_run(out / exported.meta["student_run"]))
    base = Side(f"run ({run.method.name}, torch fp32)", run.model(), run_model_size(run))
    label = exported.meta["kind"] + (f" {exported.meta['quantize']}" if exported.meta.get("quantize") else "")
    return compare(run, base, Side(f"export: {label}", exported.model, size), limit=limit)


def load_export(folder: str | Path, threads: int | None = None) -> LoadedExport:
    """The export as a model the run's task can score: ONNX through onnxruntime, GGUF weights dequantised into a
    transformers model, merged/int8 through transformers (int8 quantised here, at load). `threads`: onnxruntime's
    intra-op threads (torch's are set by the caller, torch.set_num_threads)."""
    from tuneforge.models.loading import load_tokenizer
    from tuneforge.tasks import TASKS

    folder = Path(folder)
    meta = export_meta(folder)
    kind = meta["kind"]
    if kind == "student":  # an ordinary run folder inside the export
        from tuneforge.registry.loaded_run import load_run

        student = load_run(folder / meta["student_run"])
        return LoadedExport(student.model(), student.tokenizer, meta)
    tokenizer = load_tokenizer(str(folder), False)
    if kind == "onnx":
        from tuneforge.export.onnx import ONNX_FILE, OnnxModel

        return LoadedExport(OnnxModel(folder / ONNX_FILE, threads), tokenizer, meta)
    if kind == "gguf":
        from tuneforge.export.gguf import read_back

        return LoadedExport(read_back(folder), tokenizer, meta)

    task_cls = TASKS.get(meta["run"]["task"]["name"])
    task = task_cls(task_cls.Params.model_validate(meta["run"]["task"]))
    model = task.build_model(str(folder), meta["run"]["labels"], pad_token_id=tokenizer.pad_token_id).float().eval()
    if task.generative:
        model.config.use_cache = True
    if kind == "int8":
        from tuneforge.export.quantize import quantize_linear_int8

        model = quantize_linear_int8(model)
    return LoadedExport(model, tokenizer, meta)


def record_in_mlflow(run: Any, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """A model version of the run's registered model, tagged with the export kind, when the run used MLflow.
    Tracking is a mirror: a failure is written into export.json, the export itself stands."""
    tracking = info["run"].get("tracking") or {}
    if not tracking.get("run_id"):
        return {}
    try:
        from tuneforge.export.tracking import register_export

        return register_export(tracking, out, info, run.config)
    except Exception as exc:  # any tracking-store failure must not lose the export
        return {"error": f"{type(exc).__name__}: {exc}"}
