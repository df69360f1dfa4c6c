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


@contextmanager
def library_output_to(log_file: Path) -> Iterator[Path]:
    """Within the block, Python warnings and the libraries' loggers write to `log_file` only."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger()  # configure transformers' own stderr handler now, so it is replaced below
    handler = logging.FileHandler(log_file, encoding="utf-8")
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
            handler.close()

