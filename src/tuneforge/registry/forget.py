"""Right to erasure: `forget(texts | records)` finds every copy of some records in a workspace, deletes them and
names the models that must be retrained.

A record is found by its fingerprint, never by keeping its text: runs record a per-record hash (`_rid`: sha256 of
the text's dedupe key, so case, spacing, punctuation and Unicode composition do not matter; taken before PII
redaction) on every prepared example, augmented copies included. Where it looks:
- the data files runs were prepared from (config.yaml data.train/validation/test): records deleted, file rewritten
  atomically in its own format (jsonl, json, csv, tsv, parquet; others are listed for deletion by hand);
- each run folder's prepared splits (data/*.jsonl), its data report (rows and fingerprints updated, the erasure
  noted) and its text artefacts (report.md/html, samples, logs, model card), also in the MLflow artifact copy;
- the server's request log (WORKSPACE/.tuneforge/requests.sqlite);
- exports (export.json names their run) and registered model versions (run.json / export.json tracking).
A run that trained (train split) or chose its checkpoint (validation split) on a record must be retrained, as must
every run built on it (a config path into its folder: a base model, a teacher, a paraphrasing run) and its exports.
A run that only tested on it is re-evaluated. The receipt lists all of this with the records' hashes only.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.data.clean import record_hash
from tuneforge.data.pii import redact
from tuneforge.errors import TuneforgeError
from tuneforge.registry.files import read_json, write_json, write_jsonl
from tuneforge.registry.forget_stores import (
    REWRITABLE,
    erase_from_request_log,
    rewrite_data_file,
    scrub_text_files,
    strings_in,
)

SPLITS = ("train", "validation", "test")
_NOT_SCRUBBED = ("model", "checkpoints")  # weights; the prepared splits (data/*.jsonl) are rewritten row by row


class ForgetError(TuneforgeError):
    pass


def _variants(text: str) -> set[str]:
    """The hashes a text may be stored under: as given, and PII-redacted (the request log and runs with
    data.clean.redact_pii keep the redacted text)."""
    return {record_hash(text), record_hash(redact(text))}


@dataclass
class ErasureQuery:
    """What to erase: plain texts and/or records shaped like the training data. The text lives in memory only."""

    texts: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    _by_task: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.texts and not self.records:
            raise ForgetError("nothing to forget", fix='give --text "..." or --file records.jsonl')

    def plain_hashes(self) -> set[str]:
        found = set()
        for text in self.texts + [r["text"] for r in self.records if isinstance(r.get("text"), str)]:
            found |= _variants(text)
        return found

    def hashes_for(self, task: Any, columns: Any) -> set[str]:
        """The hashes the records have in a run of this task (each record read as the task reads its data)."""
        from tuneforge.tasks.base import RecordError

        key = f"{task.params.model_dump_json()}|{columns.model_dump_json()}"
        if key not in self._by_task:
            found = self.plain_hashes()
            for record in self.records:
                try:
                    found |= _variants(task.text_of(task.parse(record, columns, None)))
                except (RecordError, KeyError, TypeError, ValueError):
                    continue  # not a record of this task's shape: only its plain text can match
            self._by_task[key] = found
        return self._by_task[key]

    def all_hashes(self) -> set[str]:
        return set().union(self.plain_hashes(), *self._by_task.values())

    def receipt_hashes(self) -> list[str]:
        """One hash per given text/record (as given, unredacted): what the receipt names instead of the text."""
        texts = self.texts + [r["text"] if isinstance(r.get("text"), str) else yaml.safe_dump(r, sort_keys=True)
                              for r in self.records]
        return sorted({record_hash(t) for t in texts})


@dataclass
class _Run:
    path: Path
    cfg: Any
    task: Any
    found: dict[str, int] = field(default_factory=dict)
    texts: set[str] = field(default_factory=set)  # the stored texts of matched rows, to scrub artefacts (memory)
    action: str | None = None
    reason: str = ""


def _load_run(path: Path) -> _Run | None:
    from tuneforge.config import load_config
    from tuneforge.tasks import TASKS

    try:
        cfg = load_config(path / "config.yaml")
    except TuneforgeError:
        return None  # a damaged config: listed as unreadable by the caller
    return _Run(path, cfg, TASKS.get(cfg.task.name)(cfg.task))


def discover(workspace: Path, extra: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run folders (config.yaml beside data/) and export folders (export.json) under the workspace and extras."""
    runs, exports = set(), set()
    for root in [workspace, *extra]:
        if not root.is_dir():
            continue
        for cfg in root.rglob("config.yaml"):
            if (cfg.parent / "data").is_dir() and not any(p.startswith(".") for p in cfg.parent.parts[-1:]):
                runs.add(cfg.parent.resolve())
        for meta in root.rglob("export.json"):
            exports.add(meta.parent.resolve())
    return sorted(runs), sorted(exports)


def _stored_texts(task: Any, example: dict[str, Any]) -> list[str]:
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    task.set_text(example, keep)
    return texts


def _scrub_split(run: _Run, split: str, hashes: set[str], dry_run: bool) -> list[dict[str, Any]] | None:
    """Delete matching rows of one prepared split; returns the kept rows (None: the split file is absent)."""
    import json

    path = run.path / "data" / f"{split}.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = []
    for row in rows:
        ids = {row.get("_rid"), record_hash(run.task.text_of(row))}  # _rid: before redaction; else the text
        if ids & hashes:
            run.texts.update(_stored_texts(run.task, row))
        else:
            kept.append(row)
    if len(kept) < len(rows):
        run.found[split] = len(rows) - len(kept)
        if not dry_run:
            write_jsonl(path, kept)
    return kept


def _update_report(run: _Run, kept: dict[str, list[dict[str, Any]]], receipt_id: str) -> None:
    from tuneforge.data.report import fingerprint

    path = run.path / "data" / "report.json"
    if not path.is_file():
        return
    report = read_json(path)
    for split, rows in kept.items():
        report.setdefault("rows", {})[split] = len(rows)
        report.setdefault("fingerprints", {})[split] = fingerprint(rows)
    report.setdefault("erasures", []).append({"receipt": receipt_id, "time": time.time(), "rows_deleted": run.found})
    write_json(path, report)


def _mlflow_artifacts(run: _Run) -> Path | None:
    """The run's artifact folder in a workspace-local MLflow store (remote stores are listed, not scrubbed)."""
    tracking = (read_json(run.path / "run.json").get("tracking") or {}) if (run.path / "run.json").is_file() else {}
    run_id = tracking.get("run_id")
    if not run_id:
        return None
    for candidate in (Path(run.cfg.output_dir) / "mlartifacts").glob(f"*/{run_id}/artifacts"):
        return candidate
    return None


def _skip_file(folder: Path) -> Any:
    def skip(file: Path) -> bool:
        parts = file.relative_to(folder).parts
        return parts[0] in _NOT_SCRUBBED or (parts[0] == "data" and file.suffix == ".jsonl")

    return skip


def scrub_run(run: _Run, query: ErasureQuery, dry_run: bool, receipt_id: str) -> dict[str, Any]:
    hashes = query.hashes_for(run.task, run.cfg.data.columns)
    kept = {split: rows for split in SPLITS if (rows := _scrub_split(run, split, hashes, dry_run)) is not None}
    if not run.found:
        return {}
    if run.found.get("train") or run.found.get("validation"):
        run.action = "retrain"
        run.reason = "trained on it" if run.found.get("train") else "chose its checkpoint on it (validation)"
    else:
        run.action, run.reason = "re-evaluate", "tested on it only"
    scrubbed = scrub_text_files(run.path, run.texts, dry_run, _skip_file(run.path))
    artifacts = _mlflow_artifacts(run)
    if artifacts is not None:
        scrubbed.update({f"mlflow:{k}": v for k, v in
                         scrub_text_files(artifacts, run.texts, dry_run, lambda f: "model" in f.parts).items()})
    if not dry_run:
        _update_report(run, kept, receipt_id)
    return {"path": str(run.path), "rows_found": dict(run.found), "rows_deleted": {} if dry_run else dict(run.found),
            "text_replaced_in": scrubbed, "action": run.action, "reason": run.reason}


def _sources(runs: list[_Run]) -> dict[str, list[_Run]]:
    by_path: dict[str, list[_Run]] = {}
    for run in runs:
        for value in (run.cfg.data.train, run.cfg.data.validation, run.cfg.data.test):
            for path in [value] if isinstance(value, str) else (value or []):
                by_path.setdefault(str(path), []).append(run)
    return by_path


def scrub_sources(runs: list[_Run], query: ErasureQuery, dry_run: bool) -> list[dict[str, Any]]:
    """The data files the runs were prepared from: every dataset version a run names."""
    from tuneforge.data.sources import detect_format

    out = []
    for path, users in sorted(_sources(runs).items()):
        entry: dict[str, Any] = {"path": path, "used_by": sorted(str(r.path) for r in users)}
        try:
            fmt = detect_format(path, users[0].cfg.data.format, users[0].task.name)
        except TuneforgeError:
            fmt = "unknown"
        entry["format"] = fmt
        if fmt == "missing" or not Path(path).exists():
            out.append({**entry, "note": "file no longer exists"})
            continue
        if fmt not in REWRITABLE or Path(path).suffix == ".gz":
            out.append({**entry, "note": f"{fmt} files are not rewritten; delete the records by hand"})
            continue
        readers = [(run.task, run.cfg.data.columns, query.hashes_for(run.task, run.cfg.data.columns))
                   for run in users]

        def matches(record: dict[str, Any], readers: list[Any] = readers) -> bool:
            return any(_record_matches(task, columns, hashes, record) for task, columns, hashes in readers)

        found = rewrite_data_file(Path(path), fmt, matches, dry_run)
        out.append({**entry, "rows_found": found, "rows_deleted": 0 if dry_run else found})
    return out


def scrub_extra_data(paths: list[Path], hashes: set[str], dry_run: bool) -> list[dict[str, Any]]:
    """Data files no run names (a curated dataset version, an export for labelling): a record matches when one of
    its texts (any string field, or a conversation's contents joined) is a record to erase."""
    from tuneforge.data.sources import detect_format

    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else [])
             if f.is_file() and f.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv", ".parquet")]
    if any(not p.exists() for p in paths):
        missing = next(p for p in paths if not p.exists())
        raise ForgetError(f"--data {missing} not found", fix="give existing data files or folders")

    def matches(record: dict[str, Any]) -> bool:
        return any(_variants(text) & hashes for text in strings_in(record))

    out = []
    for file in files:
        fmt = detect_format(str(file), "auto", "classification")
        found = rewrite_data_file(file, fmt, matches, dry_run)
        out.append({"path": str(file), "format": fmt, "used_by": [], "matched_by": "any text field",
                    "rows_found": found, "rows_deleted": 0 if dry_run else found})
    return out


def _record_matches(task: Any, columns: Any, hashes: set[str], record: dict[str, Any]) -> bool:
    from tuneforge.tasks.base import RecordError

    try:
        return bool(_variants(task.text_of(task.parse(record, columns, None))) & hashes)
    except (RecordError, KeyError, TypeError, ValueError):
        return False  # a record the run could not read did not train it; it stays


def _path_values(raw: Any) -> list[Path]:
    if isinstance(raw, dict):
        return [p for v in raw.values() for p in _path_values(v)]
    if isinstance(raw, list):
        return [p for v in raw for p in _path_values(v)]
    if isinstance(raw, str) and ("/" in raw or "\\" in raw):
        return [Path(raw).expanduser().resolve()]
    return []


def propagate(runs: list[_Run]) -> None:
    """A run whose config points into a run to retrain (base model, teacher, paraphraser) must be retrained too."""
    changed = True
    while changed:
        changed = False
        tainted = [r for r in runs if r.action == "retrain"]
        for run in runs:
            if run.action == "retrain":
                continue
            raw = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8")) or {}
            for value in _path_values(raw):
                source = next((t for t in tainted if value == t.path or t.path in value.parents), None)
                if source is not None:
                    run.action, run.reason = "retrain", f"built on {source.path.name}, which must be retrained"
                    changed = True
                    break


def _exports(exports: list[Path], runs: list[_Run], query: ErasureQuery, dry_run: bool) -> list[dict[str, Any]]:
    """Exports of runs to retrain must be made again from the retrained run; their text artefacts are scrubbed."""
    by_path = {r.path: r for r in runs}
    out = []
    for folder in exports:
        meta = read_json(folder / "export.json")
        source = Path(str((meta.get("run") or {}).get("path", ""))).resolve()
        run = by_path.get(source)
        if run is None or run.action is None:
            continue
        entry = {"path": str(folder), "run": str(source), "kind": meta.get("kind"),
                 "action": "re-export" if run.action == "retrain" else "re-evaluate",
                 "text_replaced_in": scrub_text_files(folder, run.texts, dry_run, lambda f: False)}
        tracking = meta.get("tracking") or {}
        if tracking.get("version"):
            entry["registered_version"] = {"name": tracking.get("registered_model"), "version": tracking["version"]}
        out.append(entry)
    return out


def _registered(runs: list[_Run], exports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        if run.action != "retrain" or not (run.path / "run.json").is_file():
            continue
        registered = (read_json(run.path / "run.json").get("tracking") or {}).get("registered_model")
        if isinstance(registered, dict) and registered.get("version"):
            out.append({**registered, "from": str(run.path)})
    out += [{**e["registered_version"], "from": e["path"]} for e in exports
            if e.get("registered_version") and e["action"] == "re-export"]
    return out


def forget(query: ErasureQuery, workspace: str | Path = "runs", *, scan: list[str | Path] | None = None,
           data: list[str | Path] | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Find and (unless dry_run) delete the records everywhere in the workspace (and in `data`: more data files or
    folders); returns the receipt, also written to WORKSPACE/.tuneforge/erasures/ (not with dry_run: a dry run
    changes nothing)."""
    from tuneforge.serving.request_log import log_path

    workspace = Path(workspace)
    if not workspace.is_dir():
        raise ForgetError(f"no workspace at {workspace}", fix="pass --workspace with the runs' output_dir")
    receipt_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    run_paths, export_paths = discover(workspace, [Path(p) for p in scan or []])
    loaded = [(p, _load_run(p)) for p in run_paths]
    runs = [r for _, r in loaded if r is not None]
    found_runs = [entry for run in runs if (entry := scrub_run(run, query, dry_run, receipt_id))]
    propagate(runs)
    found_runs += [{"path": str(r.path), "rows_found": {}, "rows_deleted": {}, "text_replaced_in": {},
                    "action": r.action, "reason": r.reason} for r in runs if r.action and not r.found]
    datasets = scrub_sources(runs, query, dry_run)
    named = {d["path"] for d in datasets}
    datasets += [d for d in scrub_extra_data([Path(p) for p in data or []], query.all_hashes(), dry_run)
                 if d["path"] not in named]
    exports = _exports(export_paths, runs, query, dry_run)
    log_file = log_path(workspace)
    hashes = query.all_hashes()
    request_log = (erase_from_request_log(log_file, lambda text: bool(_variants(text) & hashes), dry_run)
                   if log_file.is_file() else {"path": str(log_file), "found": 0, "note": "no request log"})
    receipt = {
        "receipt": receipt_id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dry_run": dry_run,
        "workspace": str(workspace.resolve()), "records": len(query.texts) + len(query.records),
        "record_hashes": query.receipt_hashes(),
        "hash": "sha256 of the text's dedupe key (NFKC, casefolded, punctuation and spacing removed), 32 hex digits;"
                " the erased text itself is not kept",
        "datasets": [d for d in datasets if d.get("rows_found") or d.get("note")],
        "runs": sorted(found_runs, key=lambda e: e["path"]), "exports": exports,
        "registered_versions": _registered(runs, exports), "request_log": request_log,
        "unreadable_runs": [str(p) for p, r in loaded if r is None],
        "retrain": sorted(e["path"] for e in found_runs if e["action"] == "retrain"),
        "re_evaluate": sorted(e["path"] for e in found_runs if e["action"] == "re-evaluate"),
    }
    if not dry_run:
        receipt["receipt_file"] = str(write_json(workspace / ".tuneforge" / "erasures" / f"{receipt_id}.json",
                                                 receipt))
    return receipt
