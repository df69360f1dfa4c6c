"""Privacy defaults, applied before any ML library is imported.

Nothing leaves the machine unless a config explicitly allows hub access: every library's telemetry is off and
Hugging Face runs offline. Users can still override a variable by setting it before importing tuneforge.
"""

from __future__ import annotations

import os

_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def apply_privacy_defaults() -> None:
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)


def allow_hub() -> None:
    """Called only when a config sets `model.allow_hub: true`: lets Hugging Face fetch from the hub."""
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[key] = "0"
    try:
        import huggingface_hub.constants as c

        c.HF_HUB_OFFLINE = False
    except Exception:  # pragma: no cover - hub library absent or changed
        pass
