"""Decorators that need torch only when the decorated function runs.

Task and method modules are imported whenever a config is read (their pydantic settings are part of it), so they
must not import torch at import time: `tuneforge config validate` then starts in well under a second.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def inference_mode(fn: F) -> F:
    """`torch.inference_mode()` around every call, importing torch on the first one."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

