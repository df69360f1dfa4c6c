"""Prometheus text-format metrics without a dependency: request counts, latency and batch-size histograms, and
resident adapters. (prometheus_client is not a tuneforge dependency; the text format is small and stable.)"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{edge:g}"}} {count}'
               for edge, count in zip(self.buckets, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        tail = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{tail} {self.sum:.6f}", f"{name}_count{tail} {self.total}"]


class Metrics:
    def __init__(self, resident_adapters: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self.resident_adapters = resident_adapters or (lambda: 0)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self.batch_size.observe(size)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP tuneforge_requests_total Requests answered, by route and HTTP status.",
                     "# TYPE tuneforge_requests_total counter"]
            lines += [f'tuneforge_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += ["# HELP tuneforge_request_latency_seconds Time from request to response, by route.",
                      "# TYPE tuneforge_request_latency_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("tuneforge_request_latency_seconds", f'route="{route}"')
            lines += ["# HELP tuneforge_batch_size Requests run together in one model call.",
                      "# TYPE tuneforge_batch_size histogram", *self.batch_size.lines("tuneforge_batch_size")]
        lines += ["# HELP tuneforge_resident_adapters Adapter runs loaded in memory now.",
                  "# TYPE tuneforge_resident_adapters gauge", f"tuneforge_resident_adapters {self.resident_adapters()}"]
        return "\n".join(lines) + "\n"
