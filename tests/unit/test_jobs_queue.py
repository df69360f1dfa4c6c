"""The jobs queue on SQLite: claims are exclusive, leases expire, dead local workers' jobs are claimed again,
cancel/pause/resume follow the job's status, and pages follow their cursors."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from tuneforge.serving.jobs_queue import JobQueue, JobRecord, JobStateError
from tuneforge.serving.process_guard import local_worker_alive


def _job(i: int, created: float | None = None) -> JobRecord:
    return JobRecord(f"ftjob-{i:04d}", created if created is not None else 1000.0 + i, "queued", "tiny", "org",
                     {"model": "tiny", "training_file": "file-x"})


def test_claims_oldest_first_and_never_twice(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite")
    for i in (2, 0, 1):
        queue.add(_job(i))
    claimed = [queue.claim(f"w{i}") for i in range(4)]
    assert [j.id if j else None for j in claimed] == ["ftjob-0000", "ftjob-0001", "ftjob-0002", None]
    assert queue.get("ftjob-0001").worker == "w1" and queue.get("ftjob-0001").attempts == 1


def test_an_expired_lease_is_claimed_again_and_the_old_worker_loses_it(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite", lease_s=0.2)
    queue.add(_job(0))
    assert queue.claim("w1") is not None
    assert queue.claim("w2") is None  # lease still held
    time.sleep(0.3)
    again = queue.claim("w2")
    assert again is not None and again.attempts == 2 and again.worker == "w2"
    assert not queue.heartbeat(again.id, "w1") and queue.control(again.id, "w1") == "lost"
    assert queue.heartbeat(again.id, "w2") and queue.control(again.id, "w2") == ""


def _exit_now() -> None:
    pass


def test_a_dead_local_workers_job_is_claimed_at_once(tmp_path: Path) -> None:
    import socket

    proc = multiprocessing.get_context("spawn").Process(target=_exit_now)
    proc.start()
    proc.join()
    dead = f"{socket.gethostname()}:{proc.pid}:abc"
    assert not local_worker_alive(dead) and local_worker_alive("elsewhere:1:abc")
    queue = JobQueue(tmp_path / "q.sqlite", lease_s=600)
    queue.add(_job(0))
    assert queue.claim(dead) is not None
    assert queue.claim("w2", alive=local_worker_alive).worker == "w2"  # lease far from over, worker gone


def test_cancel_pause_resume_follow_the_status(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite")
    for i in range(3):
        queue.add(_job(i))
    assert queue.request("ftjob-0000", "cancel").status == "cancelled"  # queued: at once
    with pytest.raises(JobStateError, match="it is cancelled"):
        queue.request("ftjob-0000", "resume")
    running = queue.claim("w")
    assert running.id == "ftjob-0001"
    assert queue.request(running.id, "pause").control == "pause"  # running: asked of its worker
    assert queue.control(running.id, "w") == "pause"
    assert queue.request(running.id, "resume").control == ""  # taken back before the worker acted
    assert queue.request(running.id, "cancel").control == "cancel"
    with pytest.raises(JobStateError, match="cancel is already pending"):
        queue.request(running.id, "pause")
    assert queue.request("ftjob-0002", "pause").status == "paused"
    assert queue.claim("w") is None  # a paused job is not claimed...
    assert queue.request("ftjob-0002", "resume").status == "queued"
    assert queue.claim("w").id == "ftjob-0002"  # ...until resumed


def test_pages_follow_their_cursors(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite")
    for i in range(5):
        queue.add(_job(i, created=1000.0))  # equal times: the id breaks the tie
    first, more = queue.list(limit=2)
    second, more2 = queue.list(after=first[-1].id, limit=2)
    third, more3 = queue.list(after=second[-1].id, limit=2)
    assert [j.id for j in first + second + third] == [f"ftjob-{i:04d}" for i in (4, 3, 2, 1, 0)]
    assert (more, more2, more3) == (True, True, False)
    for step in range(25):
        queue.add_event("ftjob-0001", f"step {step}", type_="metrics", data={"step": step})
    page, has_more = queue.events("ftjob-0001", limit=10)
    rest, _ = queue.events("ftjob-0001", after=page[-1].id, limit=100)
    steps = [e.data["step"] for e in page + rest]
    assert steps == list(range(24, -1, -1)) and has_more
    with pytest.raises(JobStateError, match="ftevent-"):
        queue.events("ftjob-0001", after="nonsense")


def _claim_many(path: str, out: multiprocessing.Queue) -> None:
    queue = JobQueue(path)
    got = []
    while (job := queue.claim(f"w-{multiprocessing.current_process().pid}")) is not None:
        got.append(job.id)
    out.put(got)


def test_processes_claim_every_job_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sqlite")
    queue = JobQueue(path)
    for i in range(60):
        queue.add(_job(i))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(path, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [job for _ in procs for job in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(claimed) == [f"ftjob-{i:04d}" for i in range(60)]


def test_the_service_refuses_a_job_that_cannot_work_and_queues_nothing(tmp_path: Path) -> None:
    from tuneforge.serving.job_config import JobInputError
    from tuneforge.serving.jobs_service import JobsService

    jobs = JobsService(tmp_path)
    with pytest.raises(JobInputError) as bad:
        jobs.create({"model": "default", "training_file": "file-x", "hyperparameters": {"bogus": 1}})
    assert bad.value.param == "hyperparameters.bogus"
    with pytest.raises(JobInputError) as missing:
        jobs.create({"model": "default", "training_file": "file-x"})
    assert missing.value.param == "training_file" and missing.value.code == "file_not_found"
    with pytest.raises(JobInputError) as forbidden:
        jobs.create({"model": "default", "training_file": "file-x", "tuneforge": {"plugins": ["evil.py"]}})
    assert forbidden.value.param == "tuneforge.plugins"
    assert jobs.list() == ([], False)
