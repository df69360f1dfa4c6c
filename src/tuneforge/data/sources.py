"""Read raw records from files, keeping where each came from (file and line) for error messages.

Each reader yields `(record, file, line)`; a record is a dict of column -> value. Readers raise DataError naming
file:line for anything that is not parseable, and do not judge the content (that is the task's job).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, DataError

Record = tuple[dict[str, Any], str, int]

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
               ".parquet": "parquet", ".conll": "conll", ".conllu": "conll", ".iob": "conll", ".bio": "conll",
               ".annotated": "conll"}


def known_extensions() -> frozenset[str]:
    """File extensions whose format detect_format tells without being told (.jsonl, .csv, .parquet, .conll...)."""
    return frozenset(_EXTENSIONS)


def _default_format(task_name: str) -> str | None:
    """The format a task's files have when their extension says nothing (Task.default_format)."""
    from tuneforge.tasks import TASKS

    try:
        return TASKS.get(task_name).default_format
    except Exception:  # not a registered task name (e.g. `data inspect` guessing): no default
        return None


def detect_format(path: str, declared: str, task_name: str) -> str:
    if declared != "auto":
        return declared
    p = Path(path)
    if p.is_dir():
        return "hf_dir"
    if not p.exists():
        return "missing"  # hub names need an explicit `format: hub`, so a typo in a path is never sent out
    suffixes = [x.lower() for x in p.suffixes]
    suffix = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else p.suffix.lower()  # x.jsonl.gz
    fmt = _EXTENSIONS.get(suffix)
    if fmt is None:  # CoNLL files often have no or odd extensions (e.g. wnut17train.conll, .txt)
        fmt = _default_format(task_name)
    if fmt is None:
        raise DataError(f"cannot tell the format from the extension {p.suffix!r}", file=path,
                        fix="set data.format to one of jsonl, json, csv, tsv, parquet, hf_dir, conll")
    return fmt


def read_records(path: str, fmt: str, task_name: str, allow_hub: bool = False) -> Iterator[Record]:
    fmt = detect_format(path, fmt, task_name)
    if fmt == "missing":
        raise DataError("file not found", file=path, fix="check data.train / data.validation / data.test paths")
    reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_tsv,
              "parquet": _read_parquet, "hf_dir": _read_hf_dir, "conll": _read_conll}.get(fmt)
    if fmt == "hub":
        yield from _read_hub(path, allow_hub)
        return
    if not Path(path).exists():
        raise DataError("file not found", file=path, fix="check data.train / data.validation / data.test paths")
    assert reader is not None
    yield from reader(path)


def _lines(path: str) -> Iterator[tuple[int, str]]:
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"invalid UTF-8 (byte {exc.start} of the line)", file=path, line=number,
                                fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text


def jsonl_record(text: str, path: str | None = None, number: int | None = None) -> dict[str, Any]:
    """One JSONL line as a record, or DataError (naming path:number when given); shared with data/validate.py,
    which reports every bad line of a file rather than the first."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", file=path, line=number,
                        fix="each line must be one JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}"
                        ) from None
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", file=path, line=number,
                        fix="each line must be one JSON object with named fields")
    return record


def _read_jsonl(path: str) -> Iterator[Record]:
    for number, text in _lines(path):
        if not text.strip():
            continue
        yield jsonl_record(text, path, number), path, number


def _read_json(path: str) -> Iterator[Record]:
    text = "".join(t for _, t in _lines(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg})", file=path, line=exc.lineno,
                        fix="the file must be a JSON list of objects (or use .jsonl, one object per line)") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise DataError("expected a JSON list of objects", file=path, fix="or use JSONL, one object per line")
    for index, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise DataError(f"item {index} is not an object", file=path, fix="each item needs named fields")
        yield record, path, index


def _read_delimited(path: str, delimiter: str) -> Iterator[Record]:
    lines = (t for _, t in _lines(path))
    reader = csv.DictReader(lines, delimiter=delimiter)
    try:
        if reader.fieldnames is None:
            raise DataError("the file is empty (no header row)", file=path, line=1,
                            fix="the first row must name the columns, e.g. text,label")
        header_size = len(reader.fieldnames)
        for row in reader:
            if None in row:  # more cells than header columns
                raise DataError(f"row has more cells than the {header_size} header columns", file=path,
                                line=reader.line_num, fix="quote fields that contain the delimiter")
            if all(v is None or v == "" for v in row.values()):
                continue
            yield dict(row), path, reader.line_num
    except csv.Error as exc:
        raise DataError(f"malformed CSV ({exc})", file=path, line=reader.line_num,
                        fix="check quoting on that line") from None


def _read_csv(path: str) -> Iterator[Record]:
    return _read_delimited(path, ",")


def _read_tsv(path: str) -> Iterator[Record]:
    return _read_delimited(path, "\t")


def _read_parquet(path: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"not a readable Parquet file ({exc})", file=path, fix="re-export the file") from None
    for index, row in enumerate(table.to_pylist(), start=1):
        yield row, path, index


def _iter_dataset(dataset: Any, label: str) -> Iterator[Record]:
    for index, row in enumerate(dataset, start=1):
        yield dict(row), label, index


def _read_hf_dir(path: str) -> Iterator[Record]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        data = load_from_disk(path)
    except Exception:
        try:  # a folder of data files (what a hub dataset repo looks like)
            from datasets import load_dataset

            data = load_dataset(path)
        except Exception as exc:
            raise DataError(f"not a datasets folder ({exc})", file=path,
                            fix="save it with Dataset.save_to_disk, or point data.train at the data files") from None
    if isinstance(data, DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        yield from _iter_dataset(data[split], f"{path}[{split}]")
    elif isinstance(data, Dataset):
        yield from _iter_dataset(data, path)


def _read_hub(name: str, allow_hub: bool) -> Iterator[Record]:
    if not allow_hub:
        raise ConfigError(f"{name!r} is a hub dataset, and hub access is off", key="data.format",
                          fix="point data.train at a local file or folder, or set model.allow_hub: true")
    from tuneforge._env import allow_hub as enable_hub

    enable_hub()
    from datasets import load_dataset

    spec, _, split = name.partition(":")
    try:
        data = load_dataset(spec, split=split or "train")
    except Exception as exc:  # network, unknown name, gated repo: one line, not a traceback
        raise DataError(f"cannot load hub dataset ({str(exc).splitlines()[0]})", file=name,
                        fix="check the name (owner/dataset[:split]) and the network") from None
    yield from _iter_dataset(data, f"hub:{spec}[{split or 'train'}]")


class ConllRecord(dict):
    """A CoNLL sentence ({"tokens", "tags"}) that also knows each token's line, so that a bad tag can name its own
    line rather than the sentence's first (kept as an attribute: it is not a column of the data)."""

    def __init__(self, tokens: list[str], tags: list[str], token_lines: list[int]) -> None:
        super().__init__(tokens=tokens, tags=tags)
        self.token_lines = token_lines


def _read_conll(path: str) -> Iterator[Record]:
    """CoNLL-style: one token per line, first column the token, last column the tag; blank line between sentences."""
    tokens: list[str] = []
    tags: list[str] = []
    numbers: list[int] = []
    for number, text in _lines(path):
        line = text.rstrip("\r\n")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                yield ConllRecord(tokens, tags, numbers), path, numbers[0]
            tokens, tags, numbers = [], [], []
            continue
        cells = line.split("\t") if "\t" in line else line.split()
        if len(cells) < 2:
            raise DataError(f"expected a token and a tag, got {line.strip()!r}", file=path, line=number,
                            fix="each line must be 'TOKEN<TAB>TAG' (blank line between sentences)")
        tokens.append(cells[0])
        tags.append(cells[-1])
        numbers.append(number)
    if tokens:
        yield ConllRecord(tokens, tags, numbers), path, numbers[0]


def infer_task(fmt: str, record: dict[str, Any] | None) -> str:
    """The task a file is most likely meant for, when none is given (by the default column names): CoNLL files and
    records holding token and tag lists are token classification, chosen/rejected pairs (or OpenAI DPO lines)
    preference data, chats and prompt/completion or instruction/output records sft; anything else is read as
    classification."""
    if fmt == "conll":
        return "token_classification"
    record = record or {}
    if isinstance(record.get("tokens"), list) and isinstance(record.get("tags"), list):
        return "token_classification"
    if ("chosen" in record and "rejected" in record) or "preferred_output" in record:  # OpenAI DPO lines too
        return "preference"
    if "messages" in record or {"prompt", "completion"} <= set(record) or {"instruction", "output"} <= set(record):
        return "sft"
    return "classification"
