"""The sweeper: releases scheduled jobs as they come due and re-sends pending jobs whose message went missing.

It also re-sends the completion callback of a final job whose callback is still pending past its mark: the mark
is set when the job becomes final and moved past each retry's due time (``callbacks.py``), so it only comes due
when the callback's message was lost (a crash before sending it, an SQS error).

Jobs in flight (processing, retrying) keep a mark too, due at the latest a grace after their lease ends or their
next attempt is due (``in_flight.mark_in_flight``, kept by the consumer with each transition; a live job's mark that
comes due is moved on). Past that, no message of the job is left: one deleted behind the job's back, or moved to the DLQ
by the queue's maxReceiveCount (crashes, timeouts, storage errors, lease waits). The sweeper then re-sends the
job (the consumer takes it over from the record), and ends it ``failed`` once its last attempt is known dead or it
made no progress for ``orphan_give_up_seconds``: so no accepted job stays non-final forever. Every such write is
conditional on the record's version, so of the sweeper and a consumer (or two sweepers) exactly one makes a
transition.

It reads a sparse index that holds only jobs with a sweep mark, so its cost follows the number of waiting and
running jobs, not the table size. Sending first and marking after means a crash in between yields a duplicate
message, which the consumer drops, never a lost one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from functions.dal.jobs_repository import JobsRepository
from functions.logic import callbacks
from functions.logic.clock import Clock, ceil_seconds, iso, parse_iso_ms
from functions.logic.enqueue import send_or_leave_to_sweeper
from functions.logic.in_flight import IN_FLIGHT, in_flight_until
from functions.logic.lanes import JobQueue
from functions.models.errors import ConcurrentUpdate
from functions.models.job import Job, JobStatus

logger = Logger(child=True)

PAGE_SIZE = 100
MAX_PAGES_PER_SHARD = 20  # bounds one run; whatever is left is next run's work


@dataclass(frozen=True)
class SweepSettings:
    sweep_shards: int
    pending_grace_seconds: int
    release_ahead_seconds: int
    in_flight_grace_seconds: int = 900
    orphan_give_up_seconds: int = 86_400


@dataclass(frozen=True)
class SweepReport:
    released: int = 0
    resent: int = 0
    skipped: int = 0
    callbacks_resent: int = 0
    orphans_resent: int = 0
    orphans_failed: int = 0


def sweep(
    repo: JobsRepository,
    queue: JobQueue,
    clock: Clock,
    settings: SweepSettings,
    after_final: Callable[[Job], None] | None = None,
) -> SweepReport:
    """One pass over the due marks. ``after_final`` is told of a job the sweeper ended (its batch may be complete)."""
    released = resent = skipped = callbacks_resent = orphans_resent = orphans_failed = 0
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
                elif job.status in IN_FLIGHT:
                    until = in_flight_until(job)
                    in_flight_grace_ms = settings.in_flight_grace_seconds * 1000
                    if until is not None and until + in_flight_grace_ms > now:
                        # Still live (its mark was kept from before): look when it would be overdue. The mark moves
                        # without a version change, so the running attempt's own conditional writes still succeed.
                        if not repo.move_sweep_mark(job, iso(until + in_flight_grace_ms)):
                            skipped += 1  # it moved on meanwhile; its own write set its mark
                        continue
                    elif _is_beyond_help(job, now, settings):
                        if _fail_orphan(repo, queue, job, now, settings, after_final):
                            orphans_failed += 1
                        else:
                            skipped += 1
                        continue
                    else:
                        # No message of the job is left: a fresh one lets the consumer take it over from the record
                        # (a dead attempt is recorded as such and the next one claimed). Looked at again after as
                        # long as it has been stuck, so a job whose copies keep getting lost is re-sent ever less
                        # often, and at the latest when it is given up.
                        send_or_leave_to_sweeper(queue, job)
                        stuck_since = parse_iso_ms(job.updated_at)
                        next_look = min(
                            now + max(in_flight_grace_ms, now - stuck_since),
                            stuck_since + settings.orphan_give_up_seconds * 1000,
                        )
                        orphans_resent += 1
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
    report = SweepReport(
        released=released,
        resent=resent,
        skipped=skipped,
        callbacks_resent=callbacks_resent,
        orphans_resent=orphans_resent,
        orphans_failed=orphans_failed,
    )
    if released or resent or callbacks_resent or orphans_resent or orphans_failed:
        logger.info("sweep done", extra=vars(report))
    return report


def _is_beyond_help(job: Job, now: int, settings: SweepSettings) -> bool:
    """Whether a job with no message left is ended rather than re-sent: its last attempt died (the consumer would
    only record that), or re-sending has not moved it for ``orphan_give_up_seconds``."""
    last_attempt_died = job.status == JobStatus.PROCESSING and job.attempts >= job.max_attempts
    return last_attempt_died or now - parse_iso_ms(job.updated_at) >= settings.orphan_give_up_seconds * 1000


def _fail_orphan(
    repo: JobsRepository,
    queue: JobQueue,
    job: Job,
    now: int,
    settings: SweepSettings,
    after_final: Callable[[Job], None] | None,
) -> bool:
    """End a job whose messages are all gone as ``failed``, once (conditional on its version); False if it moved."""
    if job.status == JobStatus.PROCESSING and job.attempts >= job.max_attempts:
        error = f"attempt {job.attempts} did not finish (consumer stopped or timed out) and its message was lost"
    else:
        stuck_hours = (now - parse_iso_ms(job.updated_at)) / 3_600_000
        error = (
            f"the job was {job.status.value} for {stuck_hours:.1f} h with no message left to run it (its messages "
            "were deleted or moved to the dead-letter queue after too many receives)"
        )
    failed = job.fail(iso(now), error).model_copy(update={"next_attempt_at_ms": None, "sweep_at": None})
    failed = callbacks.arm(failed, now, settings.pending_grace_seconds)
    try:
        repo.save(job, failed)
    except ConcurrentUpdate:
        return False  # a consumer (or another sweeper) moved it meanwhile: theirs stands
    logger.warning("in-flight job with no message left ended as failed", extra={"job_id": job.id, "error": error})
    saved = failed.model_copy(update={"version": job.version + 1})
    # Its callback message lost too? Its sweep mark (set by arm) brings it back.
    callbacks.announce_final(queue, saved, after_final, event="an orphaned job failed")
    return True
