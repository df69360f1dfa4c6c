"""Several processes (and machines) for one run, through torchrun and accelerate: never a home-made layer.

`tuneforge train CONFIG --processes N` re-launches itself under `torch.distributed.run` (torchrun); transformers'
Trainer then runs DDP through accelerate (gloo on CPU, NCCL on GPUs). This module only answers who this process is
and keeps the run folder single-writer: rank 0 prepares the data and writes everything, the other ranks wait for it
and read the prepared splits back, so a long preparation cannot trip a collective timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class Launch:
    processes: int = 1  # per machine
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def distributed(self) -> bool:
        return self.processes * self.nodes > 1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True inside a process that torchrun (or accelerate launch) started."""
    return "LOCAL_RANK" in os.environ and world_size() > 1


def torchrun_command(launch: Launch, train_args: list[str]) -> list[str]:
    """The torchrun command that re-runs `tuneforge train` in `launch.processes` processes on this machine."""
    if launch.processes < 1 or launch.nodes < 1 or not 0 <= launch.node_rank < launch.nodes:
        raise ConfigError(f"{launch.processes} processes on node {launch.node_rank} of {launch.nodes}",
                          key="--processes/--nodes/--node-rank", fix="e.g. --processes 2, or --nodes 2 --node-rank 0")
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={launch.processes}",
            f"--nnodes={launch.nodes}", f"--node_rank={launch.node_rank}", f"--master_addr={launch.master_addr}",
            f"--master_port={launch.master_port}", "-m", "tuneforge.cli.main", "train", *train_args]


def relaunch(launch: Launch, train_args: list[str]) -> int:
    """Run the training under torchrun and return its exit code (the processes' output goes to this console)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(torchrun_command(launch, train_args), env=env)


def _state() -> Any:
    """accelerate's process state as transformers' Trainer will build it (gloo over CPU when there is no GPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first; the others enter it only once rank 0 has left it."""
    if world_size() <= 1:
        yield
        return
    with _state().main_process_first():
        yield


def sharding_arguments(sharding: str, cuda: bool, deepspeed_installed: bool) -> dict[str, Any]:
    """TrainingArguments for the chosen sharding, passed on to accelerate (which never enables FSDP on CPU)."""
    if sharding == "ddp":
        return {}
    if not cuda:
        raise ConfigError(f"{sharding} shards parameters across GPUs; on CPU accelerate runs DDP only",
                          key="training.sharding", fix="use sharding: ddp on CPU")
    if sharding == "fsdp":
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": {"version": 2, "reshard_after_forward": True}}
    if not deepspeed_installed:
        raise ConfigError(f"{sharding} needs the deepspeed package", key="training.sharding",
                          fix="pip install deepspeed (CUDA), or use sharding: fsdp")
    stage = 2 if sharding == "zero2" else 3
    return {"deepspeed": {"zero_optimization": {"stage": stage}, "bf16": {"enabled": "auto"},
                          "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                          "gradient_clipping": "auto"}}


def read_prepared(run_dir: Path) -> Any:
    """The splits rank 0 prepared and wrote (other ranks never re-run the preparation)."""
    from tuneforge.data.prepare import PreparedData
    from tuneforge.registry.files import read_json

    report = read_json(run_dir / "data" / "report.json")
    splits = {}
    for name in ("train", "validation", "test"):
        path = run_dir / "data" / f"{name}.jsonl"
        splits[name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return PreparedData(splits, list(report["labels"]), report)
