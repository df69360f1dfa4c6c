"""`student`: a smaller causal LM distilled from the run (the `distillation` task), measured like every export.

`--student-config FILE` is an ordinary run config for the student (at least `model.path`: a smaller model with the
run's tokenizer; method, training, temperature, alpha as for any distillation run). What it leaves out is taken
from the run: the teacher is the run itself, the data are the run's own splits (RUN/data/*.jsonl, already cleaned
and split), the chat template and generation length are the run's. The student is trained into
`<export>/run/`, an ordinary run folder (report, metrics with the teacher as ceiling, model), and the export's
report puts it in the same export-vs-run table as the other kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.export._common import ExportError

STUDENT_RUN = "run"


def _read(config_file: Path) -> dict[str, Any]:
    import yaml

    if not config_file.is_file():
        raise ExportError(f"student config {config_file} not found",
                          fix="give --student-config a run config with model.path (see `tuneforge config init`)")
    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not raw["model"].get("path"):
        raise ExportError(f"{config_file}: the student config needs model.path (the smaller model to train)",
                          fix="add `model: {path: FOLDER}`, a causal LM with the run's tokenizer")
    return raw


def student_config(run: Any, config_file: Path, out: Path) -> Any:
    """The student's run config: the file's settings, with the teacher, data and template taken from the run."""
    from tuneforge.config import parse_config

    if not run.generative:
        raise ExportError(f"run {run.name} is a {run.task.name} run; --to student distils causal LMs",
                          fix="export encoder runs with --to onnx (and --quantize int8) to make them smaller")
    raw = _read(config_file)
    task = raw.setdefault("task", {})
    if task.setdefault("name", "distillation") != "distillation":
        raise ExportError(f"{config_file}: task.name is {task['name']!r}; a student is trained by distillation",
                          fix="set task.name: distillation or leave task.name out")
    if task.setdefault("teacher", str(run.path)) != str(run.path):
        raise ExportError(f"{config_file}: task.teacher names {task['teacher']}; the teacher of `export --to "
                          f"student` is the run being exported", fix="leave task.teacher out")
    for key in ("chat_template", "max_new_tokens"):
        task.setdefault(key, getattr(run.task.params, key))
    data = raw.setdefault("data", {})
    for split in ("train", "validation", "test"):
        if (run.path / "data" / f"{split}.jsonl").is_file():
            data.setdefault(split, str(run.path / "data" / f"{split}.jsonl"))
    data.setdefault("max_length", run.max_length)
    raw.update(name=STUDENT_RUN, output_dir=str(out))
    return parse_config(raw, source=config_file)


def export_student(run: Any, out: Path, config_file: Path | None) -> dict[str, Any]:
    import tuneforge
    from tuneforge.registry.files import read_json

    if config_file is None:
        raise ExportError("--to student needs --student-config FILE", fix="give a run config with model.path")
    cfg = student_config(run, Path(config_file), out)
    tuneforge.train(cfg, quiet=True)
    train = read_json(out / STUDENT_RUN / "metrics.json").get("train", {})
    return {"files": sorted(p.name for p in out.iterdir()), "format": "tuneforge run", "student_run": STUDENT_RUN,
            "student_model": cfg.model.path, "student_params": train.get("total_params"),
            "teacher_params": train.get("teacher_params"), "compression": train.get("compression"),
            "notes": [f"the student is an ordinary run: `tuneforge serve`, `export` and `generate` take "
                      f"{STUDENT_RUN}/ like any run folder"]}
