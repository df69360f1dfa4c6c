"""Library chatter goes to the run's log file, not to the user's console.

transformers, datasets, peft, trl and accelerate warn on every run (deprecations, load reports, advice). The user's
console keeps tuneforge's own messages; the run folder's `logs/train.log` keeps everything else, so nothing is lost.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LIBRARY_LOGGERS = ("py.warnings", "transformers", "datasets", "peft", "trl", "accelerate", "torch", "mlflow",
                   "sentence_transformers", "huggingface_hub")


class _RunFolderLog(logging.Handler):
    """Appends to the run's log file once the run folder exists, holding earlier lines until then: a run refused
    before its folder is created (bad data, a config error) must not leave a folder behind."""

    def __init__(self, log_file: Path) -> None:
        super().__init__()
        self.log_file, self.pending = log_file, []  # type: ignore[var-annotated]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record))
            self.flush()
        except Exception:  # logging must never break the run
            self.handleError(record)

    def flush(self) -> None:
        run_dir = self.log_file.parent.parent
        if not self.pending or not run_dir.is_dir():
            return
        self.log_file.parent.mkdir(exist_ok=True)
        with open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write("\n".join(self.pending) + "\n")
        self.pending.clear()


@contextmanager
def library_output_to(log_file: Path) -> Iterator[Path]:
    """Within the block, Python warnings and the libraries' loggers write to `log_file` only (`logs/` inside the
    run folder, written once that folder exists)."""
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger()  # configure transformers' own stderr handler now, so it is replaced below
    handler = _RunFolderLog(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # every warning once per place, into the file
        logging.captureWarnings(True)
        try:
            yield log_file
        finally:
            logging.captureWarnings(False)
            for logger, handlers, propagate in saved:
                logger.handlers, logger.propagate = handlers, propagate
            handler.flush()
            handler.close()

