"""A worker: claims jobs from the queue and runs each as a normal tuneforge run, in a child training process.

The child (`job_training.py`) trains; the worker holds the claim (renewing its lease), watches for cancel and pause,
and records the outcome. Training in a child means a cancel, a crash in training or a kill of the worker never takes
the server down, and the child exits when its worker dies, so a job is never trained twice at once.
A claimed job whose run folder already holds a config resumes from its last checkpoint (`tuneforge train --resume`):
after a crash of the worker or the machine the job costs at most the steps since that checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.registry.files import read_json, write_json, write_text
from tuneforge.serving.job_config import JOB_RECORD, JobInputError, build_config
from tuneforge.serving.jobs_queue import LEASE_S, JobQueue, JobRecord
from tuneforge.serving.process_guard import die_with_parent, local_worker_alive, worker_id

log = logging.getLogger("tuneforge.worker")


def job_dir(workspace: Path, job_id: str) -> Path:
    """Where the worker keeps a job's config, the child's log and its outcome (apart from the run folder, which
    must be empty when a run starts)."""
    return workspace / ".tuneforge" / "jobs" / job_id


_PRELOAD = ["tuneforge.serving.job_training", "tuneforge.api", "tuneforge.training.trainer", "peft", "trl"]


def training_context() -> Any:
    """Training children come from a fork server that imported torch, transformers, peft and trl once (about 9 s
    of CPU per job otherwise); forked from a single-threaded server process, never from the (threaded) worker.
    Each child exits within half a second of its worker's death (job_training._exit_with)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


class Worker:
    def __init__(self, workspace: str | Path, queue: str | None = None, *, lease_s: float = LEASE_S,
                 poll_s: float = 1.0, threads: int | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.queue = JobQueue.open(self.workspace, queue, lease_s)
        self.queue_url = queue or str(self.queue.url)
        self.id = worker_id()
        self.poll_s, self.threads = poll_s, threads
        self.stop = threading.Event()
        self.child: Any = None
        training_context()  # start the fork server now: its imports are done before the first job arrives

    def run(self, max_jobs: int | None = None) -> int:
        """Claim and run jobs until `stop` is set (SIGTERM/SIGINT in `serve_forever`) or `max_jobs` ran."""
        done = 0
        while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
            job = self.queue.claim(self.id, alive=local_worker_alive)
            if job is None:
                self.stop.wait(self.poll_s)
                continue
            try:
                self.execute(job)
            except Exception as exc:  # a bug in tuneforge: the job fails with a pointer to the log, the worker lives
                log.exception("job %s", job.id)
                self._fail(job, "server_error", f"{type(exc).__name__}: {exc} (see the worker's log)", None)
            done += 1
        return done

    def serve_forever(self) -> None:
        """`tuneforge worker`: run until SIGTERM or Ctrl-C, then hand the running job back (checkpoint first)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        log.info("worker %s on %s", self.id, self.queue.describe())
        self.run()

    # ---- one job ----------------------------------------------------------------------------------------
    def execute(self, job: JobRecord) -> None:
        if job.control in ("cancel", "pause"):  # asked while no worker held it (its worker had died)
            self._stopped(job, job.control)
            return
        try:
            cfg = build_config(self.workspace, job.id, job.request)
        except JobInputError as exc:
            self._fail(job, exc.code, str(exc), exc.param)
            return
        except TuneforgeError as exc:
            self._fail(job, "invalid_config", str(exc), None)
            return
        run_dir = cfg.run_dir
        if (run_dir / "metrics.json").is_file():  # finished before its worker could record it
            self._succeeded(job, run_dir)
            return
        resume = (run_dir / "config.yaml").is_file()
        if run_dir.exists() and not resume:  # died before its data was prepared: nothing to keep
            import shutil

            shutil.rmtree(run_dir)
        folder = job_dir(self.workspace, job.id)
        from tuneforge.config import dump_config

        write_text(folder / "config.yaml", dump_config(cfg))
        (folder / "result.json").unlink(missing_ok=True)
        self.queue.add_event(job.id, f"Fine-tuning job {'resumed' if resume else 'started'} by worker {self.id}"
                             f" (attempt {job.attempts})", data={"worker": self.id, "attempt": job.attempts})
        code = self._train(job, folder, resume)
        self._record(job, folder, code, run_dir)

    def _train(self, job: JobRecord, folder: Path, resume: bool) -> int | None:
        """Run the child to its end while holding the claim; None when the claim was lost."""
        from tuneforge.serving import job_training

        argv = [str(folder / "config.yaml"), "--job", job.id, "--queue", self.queue_url, "--worker", self.id,
                "--model-id", _model_id(job), *(["--resume"] if resume else [])]
        self.child = child = training_context().Process(
            target=job_training.child_main, args=(argv, str(folder / "training.log"), self.threads, os.getpid()),
            name=f"tuneforge-train-{job.id}")
        child.start()
        beat, signalled = time.monotonic(), 0.0
        while child.exitcode is None:
            child.join(0.2)
            now = time.monotonic()
            if now - beat >= self.queue.lease_s / 3:
                beat = now
                if not self.queue.heartbeat(job.id, self.id):  # the lease ran out and another worker took it
                    child.kill()
                    child.join()
                    return None
            if signalled >= 0 and (self.stop.is_set() or self.queue.control(job.id, self.id) in ("cancel", "pause")):
                signalled = signalled or now
                # the child checks cancel/pause every step; one that has not started training (or is inside an
                # evaluation) gets SIGTERM after 2 s: its GracefulStop saves a checkpoint at the end of the step
                if self.stop.is_set() or now - signalled > 2.0:
                    os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
                    signalled = -1.0
        return child.exitcode

    def _record(self, job: JobRecord, folder: Path, code: int | None, run_dir: Path) -> None:
        self.child = None
        if code is None:
            log.warning("job %s was claimed by another worker; left to it", job.id)
            return
        result = read_json(folder / "result.json") if (folder / "result.json").is_file() else {}
        outcome = result.get("outcome")
        if outcome == "succeeded":
            self._succeeded(job, run_dir)
            return
        asked = self.queue.control(job.id, self.id)
        if asked in ("cancel", "pause"):
            self._stopped(job, asked)
        elif asked == "lost":
            return
        elif self.stop.is_set() and outcome in ("stopped", None):  # the worker is shutting down: hand the job back
            self.queue.add_event(job.id, "Worker stopped; the job goes back to the queue and resumes from its "
                                         "last checkpoint")
            self.queue.update(job.id, self.id, status="queued", worker=None, lease_until=None)
        else:
            error = result.get("error") or {"code": "training_failed", "param": None,
                                            "message": f"the training process exited with code {code}; see "
                                                       f"{folder / 'training.log'}"}
            self._fail(job, error.get("code") or "training_failed", error["message"], error.get("param"))

    def _succeeded(self, job: JobRecord, run_dir: Path) -> None:
        name = _model_id(job)
        write_json(run_dir / JOB_RECORD, {"fine_tuned_model": name, "job": job.id})  # the server's name for it
        self.queue.update(job.id, self.id, status="succeeded", fine_tuned_model=name, finished_at=time.time(),
                          control="", lease_until=None, trained_tokens=_trained_tokens(run_dir))
        self.queue.add_event(job.id, f"The job has successfully completed: {name}", data={"fine_tuned_model": name})

    def _stopped(self, job: JobRecord, asked: str) -> None:
        if asked == "cancel":
            self.queue.update(job.id, self.id, status="cancelled", finished_at=time.time(), control="",
                              lease_until=None)
            self.queue.add_event(job.id, "The job was cancelled; its last checkpoint is kept")
        else:
            self.queue.update(job.id, self.id, status="paused", control="", worker=None, lease_until=None)
            self.queue.add_event(job.id, "The job was paused; resume continues from its last checkpoint")

    def _fail(self, job: JobRecord, code: str, message: str, param: str | None) -> None:
        self.queue.update(job.id, self.id, status="failed", finished_at=time.time(), lease_until=None, control="",
                          error={"code": code, "message": message, "param": param})
        self.queue.add_event(job.id, f"The job failed: {message}", level="error")


def _model_id(job: JobRecord) -> str:
    from tuneforge.serving.job_config import fine_tuned_name

    return fine_tuned_name(job.model, job.org, job.request.get("suffix"), job.id)


def _trained_tokens(run_dir: Path) -> int | None:
    try:
        steps = read_json(run_dir / "metrics.json").get("train", {})
    except (OSError, ValueError):
        return None
    value: Any = steps.get("trained_tokens")
    return int(value) if isinstance(value, int | float) else None


def main(workspace: Path, queue: str | None, lease_s: float = LEASE_S, threads: int | None = None,
         parent_pid: int | None = None) -> None:
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Worker(workspace, queue, lease_s=lease_s, threads=threads).serve_forever()
