"""The sweep mark a job in flight keeps (``logic/sweep.py`` reads it): its own module so that the consumer, which
sets it with each transition, does not load the sweeper's logic (and what that imports) at its cold start."""

from __future__ import annotations

from functions.logic.clock import iso
from functions.models.job import Job, JobStatus

IN_FLIGHT = frozenset({JobStatus.PROCESSING, JobStatus.RETRYING})


def in_flight_until(job: Job) -> int | None:
    """When an in-flight job's message is due back at the latest: its lease's end, or its next attempt's time."""
    if job.status == JobStatus.PROCESSING:
        return job.lease_until_ms
    if job.status == JobStatus.RETRYING:
        return job.next_attempt_at_ms
    return None


def mark_in_flight(job: Job, grace_seconds: int, previous: str | None = None) -> Job:
    """``job`` (about to be written by the consumer) with the sweep mark its status calls for: final, none
    (``callbacks.arm`` sets one for a pending callback); in flight, due at the latest a grace after its lease or
    next attempt. An earlier mark (the one it had while pending, nearly always) is kept: the index holds keys only,
    so a write keeping the mark costs it nothing, where moving it is a delete and a put. If such a mark comes due
    while the job is still live, the sweeper moves it then (``move_sweep_mark``, no version change). ``previous``:
    the mark before the transition, when the transition itself drops it (``Job.start``)."""
    if job.status.is_final:
        return job.model_copy(update={"sweep_at": None})
    until = in_flight_until(job)
    if job.status not in IN_FLIGHT or until is None:
        return job
    latest = iso(until + grace_seconds * 1000)
    kept = previous if previous is not None else job.sweep_at
    return job.model_copy(update={"sweep_at": kept if kept is not None and kept <= latest else latest})
