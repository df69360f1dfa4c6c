"""The training process of one job (started by a worker, one per job): `tuneforge.train` with a callback that
reports to the queue.

The callback writes a metrics event per logged step (step, train_loss, valid_loss), a checkpoint record per saved
checkpoint, and reads the job's `control` every training step: on cancel or pause it saves a checkpoint at the end
of that step and stops; when the job is no longer this worker's (its lease ran out and another worker took it) it
stops at once without writing anything. Run as `python -m tuneforge.serving.job_training`; the outcome is written
to `result.json` beside the job's config for the worker to read.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneforge.errors import RunInterrupted, TuneforgeError
from tuneforge.serving.jobs_queue import JobQueue

EXIT_STOPPED = 3  # stopped on request (cancel, pause) or because the claim was lost


class JobStopped(RunInterrupted):
    """Raised after the checkpoint of a cancel or pause is written (a RunInterrupted: the run stays resumable)."""


class JobReporter(TrainerCallback):
    def __init__(self, queue: JobQueue, job_id: str, worker: str, model_id: str, cfg: Any = None) -> None:
        self.queue, self.job_id, self.worker, self.model_id, self.cfg = queue, job_id, worker, model_id, cfg
        self.stopping = ""
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step > 0:
            self.queue.add_event(self.job_id, f"Resumed from the checkpoint at step {state.global_step}",
                                 data={"resumed_from_step": state.global_step, "total_steps": state.max_steps})
        else:
            self.queue.add_event(self.job_id, f"Training started ({state.max_steps} steps)",
                                 data={"total_steps": state.max_steps})

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.last["train_loss"] = float(logs["loss"])
        elif "eval_loss" in logs:
            self.last["valid_loss"] = float(logs["eval_loss"])
        else:
            return
        data = {"step": state.global_step, "train_loss": self.last.get("train_loss"),
                "valid_loss": self.last.get("valid_loss"), "total_steps": state.max_steps,
                "epoch": round(float(state.epoch or 0), 4)}
        if "learning_rate" in logs:
            data["learning_rate"] = float(logs["learning_rate"])
        shown = ", ".join(f"{k.replace('_', ' ')}={v:.4f}" for k, v in data.items()
                          if k in ("train_loss", "valid_loss") and v is not None)
        self.queue.add_event(self.job_id, f"Step {state.global_step}/{state.max_steps}: {shown}", type_="metrics",
                             data=data)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        asked = self.queue.progress(self.job_id, self.worker, state.global_step, state.max_steps)
        if asked == "lost":  # another worker holds the job now: write nothing more
            raise JobStopped(f"job {self.job_id} is no longer held by this worker")
        if asked in ("cancel", "pause") and not self.stopping:
            self.stopping = asked
            control.should_save = True
            control.should_training_stop = True

    def _publish(self, step: int, model_id: str, metrics: dict[str, Any], kw: dict[str, Any]) -> Path | None:
        """The servable copy of this checkpoint; a failure (a full disk) is reported, and training goes on: the
        trainer's own checkpoint, which resuming needs, was written before this."""
        from tuneforge.serving.job_checkpoints import publish_checkpoint

        if self.cfg is None:
            return None
        try:
            return publish_checkpoint(self.cfg, kw["model"], kw.get("processing_class"), step, model_id, metrics)
        except Exception as exc:
            self.queue.add_event(self.job_id, f"Could not write the servable checkpoint of step {step}: {exc}",
                                 level="warn")
            return None

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        step = state.global_step
        metrics = {"step": step, **{k: v for k, v in self.last.items() if v is not None}}
        model_id = f"{self.model_id}:ckpt-step-{step}"
        path = self._publish(step, model_id, metrics, kw)
        if path is not None:
            self.queue.add_checkpoint(self.job_id, step, metrics, model_id, str(path))
        if self.stopping:
            self.queue.add_event(self.job_id, f"Checkpoint saved at step {step}; stopping ({self.stopping})",
                                 data={"step": step})
            raise JobStopped(f"{self.stopping} requested; stopped at step {step} after saving its checkpoint")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tuneforge.serving.job_training")
    parser.add_argument("config", type=Path)
    parser.add_argument("--job", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--parent-pid", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import tuneforge
    from tuneforge.config import load_config
    from tuneforge.registry.files import write_json
    from tuneforge.serving.process_guard import die_with_parent

    args = _arguments(argv)
    die_with_parent(args.parent_pid)  # never trains on after its worker died (a new worker resumes the job)
    result_file = args.config.with_name("result.json")
    queue = JobQueue(args.queue)
    cfg = load_config(args.config)
    reporter = JobReporter(queue, args.job, args.worker, args.model_id, cfg)
    try:
        done = tuneforge.train(cfg, resume=args.resume, quiet=True, callbacks=[reporter])
    except RunInterrupted as exc:
        write_json(result_file, {"outcome": "stopped", "reason": reporter.stopping or "signal", "message": str(exc)})
        return EXIT_STOPPED
    except TuneforgeError as exc:
        write_json(result_file, {"outcome": "failed", "error": {"code": type(exc).__name__, "message": str(exc),
                                                                "param": getattr(exc, "key", None)}})
        return 2
    except Exception as exc:  # a bug: keep the traceback in the job's log, tell the user where
        traceback.print_exc()
        write_json(result_file, {"outcome": "failed", "error": {
            "code": "server_error", "message": f"{type(exc).__name__}: {exc} (traceback in {args.config.parent})",
            "param": None}})
        return 1
    write_json(result_file, {"outcome": "succeeded", "run_dir": str(done.run_dir),
                             "steps": done.train_info.get("steps"), "test_metrics": done.test_metrics,
                             "resumed_from": done.train_info.get("resumed_from")})
    return 0


def _exit_with(worker_pid: int) -> None:
    """A watchdog thread: the child's parent is the fork server, which outlives a killed worker (each child holds
    the fork server's liveness pipe open), so the child watches the worker itself and exits within half a second of
    its death: a job is never trained by an orphan while a new worker resumes it."""
    import os
    import threading
    import time

    from tuneforge.serving.process_guard import pid_alive

    def watch() -> None:
        while pid_alive(worker_pid):
            time.sleep(0.5)
        os._exit(137)

    threading.Thread(target=watch, name="tuneforge-worker-watch", daemon=True).start()


def child_main(argv: list[str], log_file: str, threads: int | None, worker_pid: int) -> None:
    """The entry point in a fork-server child: output to the job's log, torch's threads, then `main`."""
    import os

    _exit_with(worker_pid)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if threads:
        import torch

        torch.set_num_threads(threads)
    sys.exit(main(argv))


if __name__ == "__main__":
    sys.exit(main())
