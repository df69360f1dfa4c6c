"""Hardware profiles for planning: named accelerators from their datasheets, and `local`/`cpu` detected here.

Datasheet numbers are dense (no 2:4 sparsity) tensor-core peaks for bf16/fp16 with fp32 accumulation, which is what
PyTorch matmuls use; `fp32_tflops` is the plain (non-TF32) fp32 peak, since PyTorch leaves TF32 matmuls off by
default. Prices are indicative on-demand cloud prices per device-hour (2025) for the cost column only; give your own
with `--price-per-hour`.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Literal

from tuneforge.errors import ConfigError

GIB = 2**30


@dataclass(frozen=True)
class Hardware:
    name: str
    kind: Literal["cuda", "cpu"]
    memory_gib: float  # per device
    bf16_tflops: float  # dense bf16/fp16 peak per device
    fp32_tflops: float
    bandwidth_gbs: float  # memory bandwidth per device (optimizer steps are bandwidth-bound)
    price_per_hour: float | None  # per device
    description: str
    detected: bool = False  # measured on this machine rather than taken from a datasheet

    @property
    def bf16(self) -> bool:
        """Trains in bf16 autocast with `precision: auto` (what tuneforge's Trainer arguments choose)."""
        return self.kind == "cuda" and self.bf16_tflops > self.fp32_tflops

    def usable_bytes(self) -> float:
        """Memory a training process can really fill. GPU: the CUDA context, cuBLAS workspaces and allocator
        fragmentation take about 1 GiB plus a few percent. CPU: the OS, the Python runtime and other processes."""
        if self.kind == "cuda":
            return self.memory_gib * GIB * 0.95 - 1.0 * GIB
        return self.memory_gib * GIB * 0.85

    def peak_flops(self, half_precision: bool) -> float:
        return (self.bf16_tflops if half_precision else self.fp32_tflops) * 1e12


# name -> (memory GiB, bf16 TFLOPS, fp32 TFLOPS, bandwidth GB/s, $/h, description)
_DATASHEETS: dict[str, tuple[float, float, float, float, float, str]] = {
    "a100-40gb": (40, 312, 19.5, 1555, 1.29, "NVIDIA A100 SXM 40GB"),
    "a100-80gb": (80, 312, 19.5, 2039, 1.79, "NVIDIA A100 SXM 80GB"),
    "h100-80gb": (80, 989, 67, 3350, 2.99, "NVIDIA H100 SXM 80GB"),
    "h200": (140, 989, 67, 4800, 3.79, "NVIDIA H200 SXM 141GB"),
    "l4": (22.5, 121, 30.3, 300, 0.80, "NVIDIA L4 24GB"),
    "rtx4090": (24, 165, 82.6, 1008, 0.69, "NVIDIA GeForce RTX 4090 24GB"),
}
PROFILES: dict[str, Hardware] = {
    name: Hardware(name, "cuda", mem, bf16, fp32, bw, price, desc)
    for name, (mem, bf16, fp32, bw, price, desc) in _DATASHEETS.items()
}
DETECTED = ("local", "cpu")
# How a detected card's name (torch.cuda.get_device_properties) maps to a datasheet profile.
_CARD_PATTERNS = {"a100-80gb": r"a100.*80", "a100-40gb": r"a100", "h100-80gb": r"h100", "h200": r"h200",
                  "l4": r"\bl4\b", "rtx4090": r"rtx ?4090"}


def hardware_names() -> list[str]:
    return [*DETECTED, *PROFILES]


def get_hardware(name: str, threads: int | None = None) -> Hardware:
    """A named profile; `local` is what training here would use (the GPU if there is one, else the CPU),
    `cpu` is this machine's CPU. Unknown names are a ConfigError listing the valid ones."""
    key = name.strip().lower()
    if key in PROFILES:
        return PROFILES[key]
    if key == "local":
        return local_gpu() or local_cpu(threads)
    if key == "cpu":
        return local_cpu(threads)
    raise ConfigError(f"unknown hardware {name!r}", key="--hardware",
                      fix=f"use one of: {', '.join(hardware_names())}")


def local_gpu() -> Hardware | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    label = props.name.lower()
    # The datasheet of a known card gives its peaks; an unknown card gets a measured bf16 matmul rate.
    known = next((PROFILES[key] for key, pattern in _CARD_PATTERNS.items() if re.search(pattern, label)), None)
    mem = props.total_memory / GIB
    if known is not None:
        return replace(known, name="local", memory_gib=mem, description=f"{props.name} (this machine)",
                       detected=True)
    tflops = _matmul_tflops("cuda", torch.bfloat16)
    return Hardware("local", "cuda", mem, tflops, tflops / 8, 1000, None, f"{props.name} (this machine, measured)",
                    detected=True)


@functools.lru_cache(maxsize=4)
def local_cpu(threads: int | None = None) -> Hardware:
    """This machine's CPU: RAM from psutil, fp32 matmul rate and copy bandwidth measured (about 1 s)."""
    import psutil
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gflops = _matmul_tflops("cpu", torch.float32) * 1000
        bandwidth = _copy_bandwidth_gbs()
    finally:
        torch.set_num_threads(before)
    ram = psutil.virtual_memory().total / GIB
    used = threads or torch.get_num_threads()
    label = f"{used} thread" + ("s" if used != 1 else "")
    return Hardware("cpu", "cpu", ram, gflops / 1000, gflops / 1000, bandwidth, None,
                    f"this machine's CPU ({os.cpu_count()} cores, {label}, {gflops:.0f} GFLOPS fp32 matmul measured)",
                    detected=True)


def _matmul_tflops(device: str, dtype: object) -> float:
    """Best of a few square matmuls: the machine's achievable dense rate (what MFU is taken against)."""
    import torch

    best = 0.0
    for n in ((1024, 2048) if device == "cpu" else (4096, 8192)):
        a = torch.randn(n, n, device=device, dtype=dtype)  # type: ignore[arg-type]
        b = torch.randn(n, n, device=device, dtype=dtype)  # type: ignore[arg-type]
        a @ b  # warm-up: thread pools, kernels
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
    return best


def _copy_bandwidth_gbs() -> float:
    import torch

    x = torch.ones(32 * 2**20 // 4)
    y = torch.empty_like(x)
    y.copy_(x)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        y.copy_(x)
        best = max(best, 2 * x.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return best
