"""`tuneforge retrain MODEL --data new.jsonl [--replay 0.3]`: a new run continued from the deployed model on new data
plus a replayed share of the original training data, measured against the deployed model, and gated.

1. MODEL is a registered model name (the run its `champion` alias points to, else its latest version) or a run
   folder. `from_base` trains from the original base model instead (a new head; the only way to add labels).
2. The new data is validated, cleaned and split with the deployed run's own data settings (same columns, same
   split ratios, seeded). Training data = the new train split + `replay` share of the original run's training
   split, so that replayed examples make up that share of what the retrain sees:
   k = round(replay * n_new / (1 - replay)), at most the whole original split, drawn with the run's seed.
   Validation gets the same share of the original validation split; the run's own test split is the new one.
3. A normal run folder is written (model.from_run = the deployed run, lineage recorded); then both models answer
   the frozen original test set (the first run's test split, carried through retrain chains) and the new test
   split, and the gate (monitoring/gate.py) decides. gate.json and retrain.json go into the run folder; a
   registered version gets its gate result as tags and becomes the `challenger`.

Only single-label classification runs are gated so far (per-example labels make the paired test exact).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config import ColumnsConfig, RunConfig, parse_config, set_override
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.monitoring.gate import NEW, OLD, GateDecision, GateThresholds, PairedPredictions, decide
from tuneforge.registry.files import read_json, write_json, write_jsonl
from tuneforge.registry.loaded_run import LoadedRun, load_run


class RetrainError(TuneforgeError):
    """A retrain that cannot start (unknown model, unsupported task, bad replay share, new labels)."""


@dataclass
class RetrainResult:
    run_dir: Path
    decision: GateDecision
    parent: Path  # the deployed run it continued from (and was compared against)
    counts: dict[str, int]
    registered: tuple[str, int] | None  # (registered name, version) when MLflow registered it


def replay_count(n_new: int, n_old: int, share: float) -> int:
    """How many original examples to replay so that they are `share` of the retrain's training examples."""
    if not 0 <= share < 1:
        raise RetrainError(f"the replay share must be in [0, 1), got {share}", fix="e.g. --replay 0.3")
    return min(n_old, round(share * n_new / (1 - share)))


def resolve_deployed(model: str | Path, workspace: str | Path | None) -> tuple[Path, str | None, Path]:
    """(run folder, registered name or None, workspace) for a registered model name or a run folder."""
    as_path = Path(model).expanduser()
    if (as_path / "config.yaml").is_file():
        run = as_path.resolve()
        status = read_json(run / "run.json") if (run / "run.json").is_file() else {}
        registered = (status.get("tracking") or {}).get("registered_model") or {}
        return run, registered.get("name"), Path(workspace).resolve() if workspace else run.parent
    from tuneforge.monitoring.registry_aliases import Registry

    space = Path(workspace or "runs")
    info = Registry(space).deployed(str(model))
    if info.run_dir is None or not (info.run_dir / "config.yaml").is_file():
        raise RetrainError(f"{model} version {info.version} has no run folder here ({info.run_dir})",
                           fix="retrain from the run folder itself: tuneforge retrain RUN_DIR --data ...")
    return info.run_dir, str(model), space.resolve()


def _check_task(parent: LoadedRun) -> None:
    if parent.task.name != "classification" or getattr(parent.task.params, "multi_label", False):
        raise RetrainError(f"retrain gates single-label classification runs; {parent.name} is a "
                           f"{parent.task.name} run", fix="retrain it with `tuneforge train` and model.from_run")


def _original(parent: LoadedRun) -> tuple[Path, str]:
    """The frozen original test file and the original base model path, carried through a chain of retrains."""
    info = read_json(parent.path / "retrain.json") if (parent.path / "retrain.json").is_file() else {}
    return Path(info.get("original_test", parent.path / "data" / "test.jsonl")), str(
        info.get("original_base", parent.config.model.path))


def _canonical(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prepared examples as records the default columns read back (the loader's `_src` dropped)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _prepare_new(parent: LoadedRun, data: Path, workspace: Path) -> Any:
    """The new data through the deployed run's own pipeline settings (columns, cleaning, split ratios, seed)."""
    from tuneforge.api import prepare_data

    if not data.is_file():
        raise DataError("new data file not found", file=data, fix="give --data a JSONL/CSV file of labelled records")
    raw = parent.config.model_dump(mode="json")
    raw["model"]["from_run"] = None  # read with the deployed run's tokenizer settings, not its parent's
    raw["data"].update(train=str(data), validation=None, test=None, labels=None, format="auto")
    raw["output_dir"] = str(workspace)
    return prepare_data(parse_config(raw, data))


def _write_inputs(folder: Path, new: Any, parent: LoadedRun, share: float, seed: int) -> dict[str, int]:
    """train/validation/test files of the retrain: new splits plus the replayed share of the original ones."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for split in ("train", "validation"):
        old = _read_rows(parent.path / "data" / f"{split}.jsonl")
        k = replay_count(len(new.splits[split]), len(old), share)
        replayed = rng.sample(old, k)
        rows = _canonical(new.splits[split]) + _canonical(replayed)
        rng.shuffle(rows)
        write_jsonl(folder / f"{split}.jsonl", rows)
        counts.update({f"new_{split}": len(new.splits[split]), f"replay_{split}": k})
    write_jsonl(folder / "test.jsonl", _canonical(new.splits["test"]))
    counts["new_test"] = len(new.splits["test"])
    return counts


def _child_config(parent: LoadedRun, name: str, workspace: Path, inputs: Path, labels: list[str],
                  registered: str | None, from_base: bool, base: str, overrides: list[str]) -> RunConfig:
    raw = parent.config.model_dump(mode="json")
    pair = "text_pair" if parent.config.data.columns.text_pair else None
    raw.update(name=name, output_dir=str(workspace))
    raw["data"].update(train=str(inputs / "train.jsonl"), validation=str(inputs / "validation.jsonl"),
                       test=str(inputs / "test.jsonl"), format="jsonl", labels=labels, skip_invalid=False,
                       columns=ColumnsConfig(text_pair=pair).model_dump())
    raw["model"] = ({**raw["model"], "path": base, "from_run": None} if from_base
                    else {**raw["model"], "from_run": str(parent.path)})
    raw["evaluation"] = {**raw["evaluation"], "baselines": []}  # the gate is this run's comparison
    if registered:
        raw["tracking"] = {**raw["tracking"], "registered_name": registered}
    for assignment in overrides:
        set_override(raw, assignment)
    return parse_config(raw, f"retrain of {parent.path}")


def _free_name(workspace: Path, stem: str) -> str:
    n = 1
    while (workspace / f"{stem}-retrain{n}").exists():
        n += 1
    return f"{stem}-retrain{n}"


def _labels_for(parent: LoadedRun, new_labels: list[str], from_base: bool, data: Path) -> list[str]:
    unknown = sorted(set(new_labels) - set(parent.labels))
    if unknown and not from_base:
        raise RetrainError(f"{data}: label(s) {', '.join(unknown[:5])} are new; the deployed run {parent.name} has a "
                           f"head for {len(parent.labels)} labels only", fix="retrain with --from-base (a new head "
                           "over the old and new labels), or drop those records")
    return list(parent.labels) + unknown


def paired_sets(parent: LoadedRun, child: LoadedRun, old_test: Path, new_test: list[dict[str, Any]]
                ) -> dict[str, PairedPredictions]:
    """Both models' predicted labels on the frozen original test set and the new test split."""
    sets = {}
    for name, rows in ((OLD, _read_rows(old_test)), (NEW, new_test)):
        inputs = [(r["text"], r["text_pair"]) if r.get("text_pair") else r["text"] for r in rows]
        sets[name] = PairedPredictions([str(r["label"]) for r in rows],
                                       [p["label"] for p in parent.predict(inputs)],
                                       [p["label"] for p in child.predict(inputs)])
    return sets


def retrain(model: str | Path, data: str | Path, *, replay: float = 0.3, workspace: str | Path | None = None,
            from_base: bool = False, name: str | None = None, overrides: list[str] | None = None,
            thresholds: GateThresholds | None = None, quiet: bool = True, console: Any = None) -> RetrainResult:
    """Retrain the deployed model on new data with replay, evaluate it against the deployed one and gate it."""
    import tuneforge

    parent_dir, registered, space = resolve_deployed(model, workspace)
    parent = load_run(parent_dir)
    _check_task(parent)
    replay_count(0, 0, replay)  # a bad share fails before any work
    data = Path(data).expanduser().resolve()
    new = _prepare_new(parent, data, space)
    labels = _labels_for(parent, new.labels, from_base, data)
    old_test, base = _original(parent)
    run_name = name or _free_name(space, parent.name)
    if (space / run_name).exists():
        raise RetrainError(f"run folder {space / run_name} already exists", fix="pick another --name")
    inputs = space / ".retrain-inputs" / run_name
    counts = _write_inputs(inputs, new, parent, replay, parent.config.training.seed)
    cfg = _child_config(parent, run_name, space, inputs, labels, registered, from_base, base, list(overrides or []))
    result = tuneforge.train(cfg, quiet=quiet, console=console)
    child = load_run(result.run_dir)
    decision = decide(paired_sets(parent, child, old_test, new.splits["test"]), thresholds)
    decision.write(result.run_dir)
    counts["old_test"] = decision.table[0]["examples"] if decision.table else 0
    reg = (result.tracking or {}).get("registered_model")
    write_json(result.run_dir / "retrain.json", {
        "parent": str(parent.path), "registered_name": registered, "new_data": str(data), "replay": replay,
        "from_base": from_base, "counts": counts, "original_test": str(old_test), "original_base": base,
        "gate": decision.passed, "version": reg["version"] if reg else None})
    registered_as = None
    if reg:
        from tuneforge.monitoring.registry_aliases import Registry

        registered_as = (str(reg["name"]), int(reg["version"]))
        registry = Registry(space, cfg.tracking.tracking_uri)
        registry.tag_gate(*registered_as, decision.passed, decision.reasons)
        registry.move(registered_as[0], "challenger", registered_as[1], "challenger",
                      reason=f"retrain of {parent.name}: gate {'passed' if decision.passed else 'failed'}")
    return RetrainResult(result.run_dir, decision, parent.path, counts, registered_as)
