"""The sweeper: releases scheduled jobs as they come due and re-sends pending jobs whose message went missing.

It also re-sends the completion callback of a final job whose callback is still pending past its mark: the mark
is set when the job becomes final and moved past each retry's due time (``callbacks.py``), so it only comes due
when the callback's message was lost (a crash before sending it, an SQS error).

It reads a sparse index that holds only jobs with a sweep mark, so its cost follows the number of waiting jobs,
not the table size. Sending first and marking after means a crash in between yields a duplicate message, which
the consumer drops, never a lost one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools import Logger

from functions.dal.jobs_repository import JobsRepository
from functions.logic import callbacks
from functions.logic.clock import Clock, ceil_seconds, iso, parse_iso_ms
from functions.logic.enqueue import send_or_leave_to_sweeper
from functions.logic.lanes import JobQueue
from functions.models.errors import ConcurrentUpdate
from functions.models.job import JobStatus

logger = Logger(child=True)

PAGE_SIZE = 100
MAX_PAGES_PER_SHARD = 20  # bounds one run; whatever is left is next run's work


@dataclass(frozen=True)
class SweepSettings:
    sweep_shards: int
    pending_grace_seconds: int
    release_ahead_seconds: int


@dataclass(frozen=True)
class SweepReport:
    released: int = 0
    resent: int = 0
    skipped: int = 0
    callbacks_resent: int = 0


def sweep(repo: JobsRepository, queue: JobQueue, clock: Clock, settings: SweepSettings) -> SweepReport:
    released = resent = skipped = callbacks_resent = 0
    grace_ms = settings.pending_grace_seconds * 1000
    for shard in range(settings.sweep_shards):
        for _ in range(MAX_PAGES_PER_SHARD):
            now = clock()
            due = repo.due_for_sweep(shard, iso(now), PAGE_SIZE)
            for job in due:
                if job.status == JobStatus.SCHEDULED and job.run_at is not None:
                    run_at = parse_iso_ms(job.run_at)
                    send_or_leave_to_sweeper(queue, job, delay_seconds=ceil_seconds(run_at - now))
                    # max(): an overdue job (lost message, sweeper down) is looked at again after a grace, not at once
                    next_look = max(run_at, now) + grace_ms
                    released += 1
                elif job.status == JobStatus.PENDING:
                    send_or_leave_to_sweeper(queue, job)
                    # A job can simply be waiting in a long backlog (or behind its group): look again after as long
                    # as it has waited so far, so re-sends thin out (grace, 2x, 4x...) instead of repeating every
                    # grace period for the whole backlog.
                    waited_ms = now - parse_iso_ms(job.updated_at)
                    next_look = now + max(grace_ms, waited_ms)
                    resent += 1
                elif callbacks.is_pending(job):
                    callbacks.send(queue, job)
                    next_look = now + grace_ms
                    callbacks_resent += 1
                else:
                    next_look = None  # a stale mark (e.g. written by an older version): just clear it
                    skipped += 1
                try:
                    repo.save(job, job.model_copy(update={"sweep_at": iso(next_look) if next_look else None}))
                except ConcurrentUpdate:
                    skipped += 1  # the job moved on meanwhile; the consumer sorts out any extra message
            if len(due) < PAGE_SIZE:
                break
    report = SweepReport(released=released, resent=resent, skipped=skipped, callbacks_resent=callbacks_resent)
    if released or resent or callbacks_resent:
        logger.info(
            "sweep done",
            extra={"released": released, "resent": resent, "skipped": skipped, "callbacks_resent": callbacks_resent},
        )
    return report
