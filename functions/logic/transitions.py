"""Read a job, decide its next state, write it on the version read: the one loop every status change goes through.

Two writers holding the same version cannot both win: the loser's write fails with ``ConcurrentUpdate``, and it
decides again from a fresh read (the job may have moved on meanwhile, so the decision may differ).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock
from functions.models.errors import ConcurrentUpdate, NotFound
from functions.models.job import Job

# Given the job as read and the time of the decision, the job to write, or None to write nothing.
Decide = Callable[[Job, int], Job | None]


def _nothing(job: Job) -> None:
    return None


@overload
def read_decide_write(
    repo: JobsRepository,
    tenant: str,
    job_id: str,
    clock: Clock,
    decide: Callable[[Job, int], Job],
    *,
    attempts: int,
    lost_race: Callable[[Job], None] = ...,
    on_missing: None = None,
    first: Job | None = None,
) -> Job: ...


@overload
def read_decide_write(
    repo: JobsRepository,
    tenant: str,
    job_id: str,
    clock: Clock,
    decide: Decide,
    *,
    attempts: int,
    lost_race: Callable[[Job], None] = ...,
    on_missing: Callable[[], None] | None = None,
    first: Job | None = None,
) -> Job | None: ...


def read_decide_write(
    repo: JobsRepository,
    tenant: str,
    job_id: str,
    clock: Clock,
    decide: Decide,
    *,
    attempts: int,
    lost_race: Callable[[Job], None] = _nothing,
    on_missing: Callable[[], None] | None = None,
    first: Job | None = None,
) -> Job | None:
    """The job as written (its version moved on), or None when ``decide`` chose to write nothing.

    ``lost_race`` is given each decision whose write lost, before deciding again (to give back what the decision
    took). A missing job raises ``NotFound``, or calls ``on_missing`` and returns None. ``first``: the record as
    the caller already has it (e.g. returned by a conditional write that failed), decided from instead of a read.
    """
    known = first
    for _ in range(attempts):
        job, known = (known, None) if known is not None else (repo.get(tenant, job_id), None)
        if job is None:
            if on_missing is None:
                raise NotFound(f"job '{job_id}' not found")
            on_missing()
            return None
        decided = decide(job, clock())
        if decided is None:
            return None
        try:
            repo.save(job, decided)
        except ConcurrentUpdate:
            lost_race(decided)
            continue
        return decided.model_copy(update={"version": job.version + 1})
    raise ConcurrentUpdate(f"job '{job_id}' kept changing; try again")
