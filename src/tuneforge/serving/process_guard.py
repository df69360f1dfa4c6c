"""Processes of the jobs system: who a worker is, whether it still runs, and a child that dies with its parent.
Shared by the queue, the worker and the training process it starts (apart from them so that none imports another)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path


def die_with_parent(parent_pid: int | None) -> None:
    """Called first thing in a worker's or training child's process: it gets SIGKILL when its parent dies
    (Linux PR_SET_PDEATHSIG), so a killed server takes its workers along, and a killed worker its training; one
    whose parent is already gone exits. Done in the child rather than in a `preexec_fn`, which is unsafe in a
    process with threads (the server's)."""
    if parent_pid is None:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the lease still moves the job on when the parent dies
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_id() -> str:
    """host:pid:random: the host and pid let a worker on the same machine see that a claim's owner is dead."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def local_worker_alive(worker: str) -> bool:
    """False only when `worker` ran on this machine and its process is gone (a worker elsewhere: unknown, True)."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_a_zombie(pid)


def _not_a_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True
