"""Long-poll reads: ``GET /jobs/{id}?wait=N`` answers as soon as the job is final, or after N seconds.

A Lambda invocation cannot be told that a record changed (Streams would reach another function, not this waiting
one), so the waiter re-reads, with spacing that grows from 0.1 s to 1 s: a job that ends quickly is seen quickly,
and a long wait costs about one read a second (~25 reads over the 20 s maximum, against 200 at a fixed 100 ms).
The wait also ends early enough for the function to answer within its own timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from functions.dal.jobs_repository import JobsRepository
from functions.logic.manage import get_job
from functions.logic.queries import int_query
from functions.models.job import Job

MAX_WAIT_SECONDS = 20
FIRST_INTERVAL_SECONDS = 0.1
MAX_INTERVAL_SECONDS = 1.0


def parse_wait(query: dict[str, str]) -> float:
    """The ``wait`` query parameter: whole seconds from 0 to 20 (0 or absent: answer at once)."""
    # An empty value answers at once, as an absent one does.
    wait = {"wait": query.get("wait") or "0"}
    return float(int_query(wait, "wait", 0, 0, MAX_WAIT_SECONDS, unit="seconds"))


def wait_for_final(
    repo: JobsRepository,
    tenant: str,
    job_id: str,
    wait_seconds: float,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Job, int]:
    """The job once final, or as it is when ``wait_seconds`` run out; with the number of reads it took."""
    deadline = monotonic() + wait_seconds
    interval = FIRST_INTERVAL_SECONDS
    reads = 1
    job = get_job(repo, tenant, job_id)
    while not job.status.is_final:
        left = deadline - monotonic()
        if left <= 0:
            break
        sleep(min(interval, left))
        interval = min(MAX_INTERVAL_SECONDS, interval * 2)
        job = get_job(repo, tenant, job_id)
        reads += 1
    return job, reads
