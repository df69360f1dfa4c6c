"""Check a whole data file against a task and report every bad line (up to a cap), not only the first.

Training stops at the first invalid record (data/prepare.py); an uploaded file (serving/file_store.py) should
instead tell its owner all that is wrong at once, so this reads on past errors. The messages and fixes are the
readers' and the tasks' own (sources.jsonl_record, Task.parse), so a file that passes here also loads for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config import ColumnsConfig
from tuneforge.data.sources import detect_format, infer_task, jsonl_record, read_records
from tuneforge.errors import DataError
from tuneforge.tasks import TASKS, RecordError

MAX_REPORTED = 20  # problems listed in full; the rest are counted


@dataclass(frozen=True)
class LineProblem:
    line: int | None  # None: the file as a whole (empty, unreadable)
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return where + self.message + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class FileCheck:
    """What `check_file` found: the file's format, the task it was read as, its record count and its problems."""

    format: str
    task: str | None
    records: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    invalid: int = 0  # invalid records in all (problems lists the first MAX_REPORTED)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One string naming each problem's line and fix (OpenAI's `status_details`)."""
        if self.ok:
            return ""
        more = self.invalid - len([p for p in self.problems if p.line is not None])
        tail = f"; and {more} more invalid line(s)" if more > 0 else ""
        return "; ".join(str(p) for p in self.problems) + tail


def _tolerant_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, LineProblem | None]]:
    """(line, record, None) for each good line and (line, None, problem) for each bad one, reading on past both."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, LineProblem(number, f"invalid UTF-8 (byte {exc.start} of the line)",
                                                "re-save the file as UTF-8")
                continue
            text = text.removeprefix("\ufeff") if number == 1 else text
            if not text.strip():
                continue
            try:
                yield number, jsonl_record(text), None
            except DataError as err:
                yield number, None, LineProblem(number, err.message, err.fix)


def _records(path: Path, fmt: str, name: str) -> Iterator[tuple[int, dict[str, Any] | None, LineProblem | None]]:
    if fmt == "jsonl" and not path.name.endswith(".gz"):
        yield from _tolerant_jsonl(path)
        return
    try:  # other formats: their readers stop at the first unparseable line, which is reported
        for record, _file, line in read_records(str(path), fmt, "", allow_hub=False):
            yield line, record, None
    except DataError as err:
        message = err.message.replace(str(path), name).removeprefix(f"{name}: ")
        yield err.line or 0, None, LineProblem(err.line, message, err.fix)


def _task(task_name: str) -> Any:
    cls = TASKS.get(task_name)  # ConfigError naming the known tasks when unknown
    return cls(cls.Params(name=task_name))


def check_file(path: str | Path, *, fmt: str = "auto", task: str = "auto", name: str | None = None,
               columns: ColumnsConfig | None = None) -> FileCheck:
    """Read `path` as `fmt` (auto: by extension) and parse every record as `task` (auto: guessed from the first
    readable record, as `tuneforge data inspect` does). `name` replaces the path in messages (an upload's
    filename). Never raises for bad content: everything wrong is in the returned FileCheck."""
    path = Path(path)
    name = name or path.name
    try:
        fmt = detect_format(str(path), fmt, "" if task == "auto" else task)
    except DataError as err:
        return FileCheck(format="unknown", task=None, problems=[LineProblem(None, f"{name}: {err.message}"
                                                                            .replace(str(path), name), err.fix)])
    columns = columns or ColumnsConfig()
    check = FileCheck(format=fmt, task=None if task == "auto" else task)
    parser = None if task == "auto" else _task(task)
    for line, record, problem in _records(path, fmt, name):
        check.records += 1
        if problem is None:
            assert record is not None
            if parser is None:
                check.task = infer_task(fmt, record)
                parser = _task(check.task)
            try:
                parser.parse(record, columns, None)
                continue
            except RecordError as err:
                problem = LineProblem(err.line or line, str(err), err.fix)
        check.invalid += 1
        if len(check.problems) < MAX_REPORTED:
            check.problems.append(problem)
    if check.records == 0:
        check.problems.append(LineProblem(None, "the file has no records", "upload a file with one example a line"))
    return check
