"""Errors a user can cause. Each names where the problem is (file:line or config key) and how to fix it.

The CLI prints them as one line and exits with code 2; programming errors keep their traceback.
"""

from __future__ import annotations

from pathlib import Path


class TuneforgeError(Exception):
    """Base for every user-facing error."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.fix}" if self.fix else self.message


class ConfigError(TuneforgeError):
    """A config file or key is wrong: names the file and the dotted key."""

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        self.file, self.key = file, key
        where = ""
        if file is not None:
            where += f"{file}: "
        if key:
            where += f"key '{key}': "
        super().__init__(where + message, fix=fix)


class DataError(TuneforgeError):
    """A data file or record is wrong: names the file and line (or row)."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 fix: str | None = None, more: int = 0) -> None:
        self.file, self.line = file, line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        tail = f" ({more} more invalid record(s); pass --skip-invalid to drop and count them)" if more else ""
        super().__init__(where + message + tail, fix=fix)


class ModelError(TuneforgeError):
    """A model path or model file cannot be used."""


class CheckpointError(TuneforgeError):
    """A checkpoint is missing or damaged."""


class RunError(TuneforgeError):
    """A run folder is missing or incomplete."""


class RunInterrupted(TuneforgeError):
    """Training was stopped by a signal after saving a checkpoint."""

    exit_code = 130


class TrainingDiverged(TuneforgeError):
    """The loss became NaN or infinite."""
