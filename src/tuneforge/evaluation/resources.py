"""Cost measurements for comparisons: per-example latency and peak memory of one phase of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


class PeakMemory:
    """Peak memory while the block runs. On CUDA: the allocator's peak (exact). On CPU: the process's resident set,
    sampled every 2 ms by a thread, reported as the peak over the whole process, because what a deployment must
    provision is everything resident (weights, index, activations), not only what this block allocated."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cuda = False

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        import torch

        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self._cuda:
            self.peak_bytes = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def latencies_ms(fn: Callable[[Any], Any], items: Iterable[Any], warmup: int = 2) -> list[float]:
    """Wall time of `fn(item)` for each item, one at a time (what one request costs), after a short warm-up."""
    items = list(items)
    for item in items[:warmup]:
        fn(item)
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(1000 * (time.perf_counter() - start))
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def folder_bytes(path: Any) -> int:
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
