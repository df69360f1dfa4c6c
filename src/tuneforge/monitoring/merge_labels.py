"""`tuneforge data merge-labels`: a labelled export merged into its source dataset as a new version.

The new version is a JSONL file plus `<file>.lineage.json`: its fingerprint (the data layer's sha256 over the
exact records), its version number, and where every row came from (the source file and its fingerprint, the
labelled export, the request log and the response ids of the requests it was cut from)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from tuneforge.data.report import fingerprint
from tuneforge.errors import DataError
from tuneforge.monitoring.curate import file_sha256


def _read_labelled(path: Path, known: set[str] | None, allow_new: bool) -> tuple[list[dict[str, Any]], int]:
    rows, skipped = [], 0
    if not path.is_file():
        raise DataError("no such file", file=path, fix="give the file `tuneforge monitor --export-for-labelling` "
                                                        "wrote, with its `label` fields filled in")
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not JSON ({exc.msg})", file=path, line=line_no, fix="one JSON object per line") \
                    from None
            text, label = row.get("text"), row.get("label")
            if not isinstance(text, str) or not text.strip():
                raise DataError("`text` is missing or empty", file=path, line=line_no, fix="keep the exported text")
            if label is None or (isinstance(label, str) and not label.strip()):
                skipped += 1  # left unlabelled on purpose
                continue
            if not isinstance(label, str):
                raise DataError(f"`label` must be a string, got {label!r}", file=path, line=line_no,
                                fix="write the label's name")
            if known is not None and label not in known and not allow_new:
                raise DataError(f"label {label!r} is not in the source dataset", file=path, line=line_no,
                                fix="correct the label, or pass --allow-new-labels to add a class")
            rows.append({"text": text, "label": label.strip(), "request_id": row.get("request_id")})
    return rows, skipped


def _read_source(path: Path, text_col: str, label_col: str) -> list[dict[str, Any]]:
    from tuneforge.data.sources import read_records

    out = []
    for raw, file, line in read_records(str(path), "auto", "classification"):
        if text_col not in raw or label_col not in raw:
            raise DataError(f"no `{text_col}`/`{label_col}` columns (has {', '.join(raw)})", file=file, line=line,
                            fix="pass --text-column and --label-column")
        out.append({"text": raw[text_col], "label": raw[label_col]})
    return out


def merge_labels(labelled: Path, source: Path, out: Path, *, text_col: str = "text", label_col: str = "label",
                 allow_new: bool = False) -> dict[str, Any]:
    """Write `out` (source rows, then the newly labelled rows not already in it) and its lineage; returns it."""
    from tuneforge.registry.files import read_json, write_json, write_text

    base = _read_source(source, text_col, label_col)
    new, skipped = _read_labelled(labelled, {r["label"] for r in base}, allow_new)
    have = {r["text"] for r in base}
    added = [r for r in new if r["text"] not in have]
    merged = base + [{"text": r["text"], "label": r["label"]} for r in added]
    write_text(out, "".join(json.dumps({text_col: r["text"], label_col: r["label"]}, ensure_ascii=False) + "\n"
                            for r in merged))
    parent_lineage = Path(f"{source}.lineage.json")
    parent_version = read_json(parent_lineage).get("version", 1) if parent_lineage.is_file() else 1
    meta_file = Path(f"{labelled}.meta.json")
    export_meta = read_json(meta_file) if meta_file.is_file() else {}
    lineage = {
        "version": parent_version + 1, "fingerprint": fingerprint(merged), "file_sha256": file_sha256(out),
        "rows": len(merged), "created": dt.datetime.now(dt.UTC).isoformat(),
        "parent": {"path": str(source), "fingerprint": fingerprint(base), "file_sha256": file_sha256(source),
                   "rows": len(base), "version": parent_version},
        "labelled": {"path": str(labelled), "file_sha256": file_sha256(labelled), "added": len(added),
                     "unlabelled_skipped": skipped, "already_in_source": len(new) - len(added),
                     "request_log": export_meta.get("request_log"), "model": export_meta.get("model"),
                     "period": export_meta.get("period"),
                     "request_ids": sorted({r["request_id"] for r in added if r.get("request_id")})},
    }
    write_json(Path(f"{out}.lineage.json"), lineage)
    return lineage
