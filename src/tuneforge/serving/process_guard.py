"""A child process that dies with its parent: shared by the jobs worker and the training process it starts (apart
from both so that neither imports the other)."""

from __future__ import annotations

import os
import signal


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
