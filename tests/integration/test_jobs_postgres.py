"""The jobs queue on a real PostgreSQL server (skipped, with the reason, where there is none): worker processes
standing in for machines claim with row locks, and no job is claimed twice or lost."""

from __future__ import annotations

import multiprocessing
import time

from tuneforge.serving.jobs_queue import JobQueue, JobRecord


def _claim_all(url: str, name: str, out: multiprocessing.Queue) -> None:
    queue = JobQueue(url)
    got = []
    while (job := queue.claim(name)) is not None:
        got.append(job.id)
        queue.add_event(job.id, f"claimed by {name}")
        time.sleep(0.002)  # hold it a moment, as a worker starting a run would
    out.put((name, got))


def test_concurrent_workers_claim_every_job_exactly_once(postgres_server) -> None:
    url = postgres_server.new_database("jobs_claims")
    queue = JobQueue(url)
    n = 80
    for i in range(n):
        queue.add(JobRecord(f"ftjob-{i:04d}", 1000.0 + i, "queued", "tiny", "org", {"training_file": "f"}))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, f"machine-{k}", out)) for k in range(4)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    claimed = [job for jobs in results.values() for job in jobs]
    assert sorted(claimed) == [f"ftjob-{i:04d}" for i in range(n)]  # all claimed, none twice
    assert sum(1 for jobs in results.values() if jobs) >= 2  # the work was shared
    for name, jobs in results.items():
        for job_id in jobs:
            record = queue.get(job_id)
            assert record.worker == name and record.status == "running" and record.attempts == 1
    events, _ = queue.events("ftjob-0007")
    assert len(events) == 1


def test_a_lapsed_lease_moves_the_job_to_another_worker(postgres_server) -> None:
    url = postgres_server.new_database("jobs_leases")
    queue = JobQueue(url, lease_s=0.3)
    queue.add(JobRecord("ftjob-a", 1.0, "queued", "tiny", "org", {"training_file": "f"}))
    assert queue.claim("m1").id == "ftjob-a"
    assert queue.claim("m2") is None
    time.sleep(0.4)
    again = queue.claim("m2")
    assert again.id == "ftjob-a" and again.attempts == 2
    assert queue.control("ftjob-a", "m1") == "lost"
    assert queue.request("ftjob-a", "cancel").control == "cancel"
    assert queue.control("ftjob-a", "m2") == "cancel"
