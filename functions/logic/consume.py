"""Running one delivered message: decide from the record, claim the attempt, run the job, record the outcome.

Delivery is at-least-once and messages can be duplicated (sweeper re-sends, retries via the API), so the record,
not the message, decides what happens. Every transition is a conditional write on the record's version: of two
consumers holding copies of one message, exactly one claims an attempt; the other drops its copy.

Consumer-side idempotency is these conditional writes, not Powertools Idempotency: the job record already is the
idempotency record (its status says whether the work was done, its version who may do it next), so a second table
keyed by message would only duplicate it, and could not cover re-sent copies, which are new SQS messages with new
ids. Work whose outcome was recorded is never started again; the one window left is a crash after a side effect
and before the outcome's write, which is why side-effecting types send an Idempotency-Key (webhook-delivery).

Outcomes for the batch: returning means "delete this message"; raising means "leave it to its visibility timeout".
A retry or a not-yet-due message sets that timeout first (``JobDeferred``), so it comes back exactly when due.

One module, a little over 400 lines: claiming, running (with its timeout) and recording an attempt are one protocol
over the record's version, and read best together.
"""

from __future__ import annotations

import contextvars
import json
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger

__all__ = ["ConsumerSettings", "JobDeferred", "MessageConsumer", "Outcome"]
from pydantic import ValidationError

from functions.dal import metering
from functions.dal.files import FileStore
from functions.dal.jobs_repository import Claim, JobsRepository
from functions.logic import callbacks
from functions.logic import cost as job_cost
from functions.logic.backoff import backoff_seconds
from functions.logic.clock import Clock, ceil_seconds, iso, parse_iso_ms
from functions.logic.in_flight import mark_in_flight
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.lanes import JobQueue
from functions.logic.limits import ADMITTED, Admission, Limiter, NoLimits
from functions.logic.pauses import MARK_AHEAD_SECONDS, PauseCheck, recheck_seconds
from functions.logic.payloads import full_payload
from functions.logic.progress import ProgressReporter
from functions.logic.transitions import read_decide_write
from functions.models.errors import ApiError, ConcurrentUpdate, FileNotFound, JobDeferred, JobFailure, JobsError
from functions.models.job import Job, JobMessage, JobStatus, Progress
from functions.settings import Settings

logger = Logger(child=True)

MAX_ERROR_LENGTH = 1000
# A message up to this early is run rather than deferred: SQS delays and visibility are whole seconds.
EARLY_TOLERANCE_MS = 1000
_MAX_RACE_RETRIES = 3
# Kept back from the invocation's remaining time to record a timed-out attempt before the invocation ends.
OUTCOME_RESERVE_MS = 1000


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    DROPPED = "dropped"  # duplicate, cancelled, already final, or another consumer won
    DEAD_LETTERED = "dead_lettered"  # malformed message
    THROTTLED = "throttled"  # over its type's limit: a fresh copy of the message comes back later
    CALLBACK = "callback"  # a completion callback was delivered (or given up)


@dataclass(frozen=True)
class ConsumerSettings:
    backoff_base_seconds: float
    backoff_cap_seconds: float


# Called with (metric name, value) so the handler can emit metrics without the logic knowing Powertools Metrics.
EventSink = Callable[[str, float], None]


def _no_events(name: str, value: float) -> None:
    return None


def _nothing_after_final(job: Job) -> None:
    return None


@dataclass
class MessageConsumer:
    repo: JobsRepository
    queue: JobQueue
    clock: Clock
    settings: ConsumerSettings
    events: EventSink = _no_events
    rng: random.Random | None = None
    # Handed to job handlers through their context (bucket names, network policy, providers).
    job_settings: Settings = field(default_factory=Settings)
    # Where offloaded payloads are read from, built on first use (most jobs never touch S3).
    files: Callable[[], FileStore] | None = None
    # Per-type rate and concurrency limits (logic/limits.py); shared state, so they hold across consumers.
    limiter: Limiter = field(default_factory=NoLimits)
    # Called with a job once it is final (its batch may now be complete: logic/batches.py). Also called when a
    # redelivered message finds its job final, so a crash between the two steps is healed by the redelivery.
    after_final: Callable[[Job], None] = _nothing_after_final
    # Delivers completion callbacks (messages of kind "callback"), given (message, source ARN, receipt handle);
    # raises JobDeferred to try again later. See logic/callbacks.py.
    callback_delivery: Callable[[JobMessage, str, str], None] | None = None
    # Paused types (logic/pauses.py): their jobs wait, no attempt counted. None: nothing is ever paused.
    pauses: PauseCheck | None = None

    def handle(
        self, body: str, source_arn: str, receipt_handle: str, remaining_ms: int, receive_count: int = 1
    ) -> Outcome:
        try:
            message = JobMessage.model_validate_json(body)
        except ValidationError:
            # Poison: no retry can fix it. Move it aside without failing its batch neighbours.
            logger.error("malformed message moved to the DLQ", extra={"body": body[:500]})
            self.queue.dead_letter(body, "malformed message", source_arn=source_arn)
            self.events("MalformedMessages", 1)
            return Outcome.DEAD_LETTERED
        # A batch's records run at once in threads: this record's log keys are context-scoped, and removed once it
        # is handled so that no later line (the next record on this thread, the invocation's own) carries them.
        logger.thread_safe_append_keys(correlation_id=message.job_id, tenant=message.tenant)
        try:
            with metering.metered():  # this record's own calls and time: its job's cost (logic/cost.py)
                return self._handle(message, body, source_arn, receipt_handle, remaining_ms, receive_count)
        finally:
            logger.thread_safe_remove_keys(["correlation_id", "tenant"])

    def _handle(
        self,
        message: JobMessage,
        body: str,
        source_arn: str,
        receipt_handle: str,
        remaining_ms: int,
        receive_count: int,
    ) -> Outcome:
        if message.kind == "callback":
            if self.callback_delivery is None:
                raise JobsError("this consumer cannot deliver callbacks")
            self.callback_delivery(message, source_arn, receipt_handle)
            return Outcome.CALLBACK
        try:
            claimed = self._claim(message, source_arn, receipt_handle, remaining_ms, receive_count)
        except _Throttled:
            return Outcome.THROTTLED
        if claimed is None:
            return Outcome.DROPPED
        job, admission = claimed
        try:
            return self._run(job, body, source_arn, receipt_handle, _attempt_budget_ms(job, remaining_ms))
        finally:
            admission.release()

    # --- claiming an attempt ---

    def _claim(
        self, message: JobMessage, source_arn: str, receipt_handle: str, remaining_ms: int, receive_count: int
    ) -> tuple[Job, Admission] | None:
        # A message received before is a retry, a wait or a redelivery: its job is rarely still pending, and a
        # conditional write that fails costs a write unit where a read costs a fifth of one.
        unread = self._claim_unread(message, remaining_ms) if receive_count <= 1 else None
        if unread is not None and unread.claimed and unread.job is not None:
            return unread.job, ADMITTED
        admissions: list[Admission] = []  # the admission of the decision being written

        def decide(job: Job, now: int) -> Job | None:
            wait_ms = self._wait_before_start(job, now)
            if wait_ms is None:
                logger.info("message dropped", extra={"status": job.status.value})
                self.events("DuplicateMessages", 1)
                if job.status.is_final:
                    self.after_final(job)
                return None
            if wait_ms > EARLY_TOLERANCE_MS:
                self.queue.defer(source_arn, receipt_handle, max(1, ceil_seconds(wait_ms)))
                raise JobDeferred(f"job is {job.status.value} until {iso(now + wait_ms)}")
            if job.attempts >= job.max_attempts:
                # Only reachable when the last attempt died without recording its outcome.
                error = f"attempt {job.attempts} did not finish (consumer stopped or timed out)"
                self._fail(job, now, error, message.to_body(), source_arn)
                return None
            self._wait_if_paused(message, job, now, source_arn, receipt_handle)
            # The attempt cannot outlive the invocation running it; past its lease, a redelivery may take over.
            started = mark_in_flight(
                job.start(iso(now), lease_until_ms=now + max(remaining_ms, 1000)),
                self.job_settings.in_flight_grace_seconds,
                previous=job.sweep_at,
            )
            # Limits are checked before the attempt is counted: a job over its limit waits, it does not fail.
            admission = self.limiter.admit(job.tenant, job.type, job.id, now, started.lease_until_ms or now)
            if not admission.admitted:
                self._throttled(message, job, source_arn, receipt_handle, admission.retry_after_seconds)
            admissions.append(admission)
            return started

        def lost_race(_: Job) -> None:
            admissions.pop().release()

        def unknown_job() -> None:
            logger.warning("message for an unknown job dropped")

        started = read_decide_write(
            self.repo,
            message.tenant,
            message.job_id,
            self.clock,
            decide,
            attempts=_MAX_RACE_RETRIES,
            lost_race=lost_race,
            on_missing=unknown_job,
            # The record as the failed claim found it decides first: no read for a duplicate or a retry.
            first=unread.job if unread is not None else None,
        )
        return None if started is None else (started, admissions.pop())

    def _claim_unread(self, message: JobMessage, remaining_ms: int) -> Claim | None:
        """The common case, a pending job's first attempt, claimed in one conditional write that returns the record
        (no read before it). Only when the message names the type (so its pauses and limits are checked first: a job
        of a limited or paused type takes the read-decide-write path); None when not tried."""
        job_type = message.type
        if job_type is None or self.limiter.is_limited(job_type):
            return None
        if self.pauses is not None and self.pauses.paused_since(message.tenant, job_type) is not None:
            return None
        now = self.clock()
        lease_until_ms = now + max(remaining_ms, 1000)
        latest = iso(lease_until_ms + self.job_settings.in_flight_grace_seconds * 1000)
        return self.repo.claim_pending(message.tenant, message.job_id, job_type, iso(now), lease_until_ms, latest)

    def _wait_if_paused(self, message: JobMessage, job: Job, now: int, source_arn: str, receipt_handle: str) -> None:
        """Put a paused type's job back without counting an attempt (raises); return when its type is not paused."""
        if self.pauses is None:
            return
        paused_at = self.pauses.paused_since(job.tenant, job.type)
        if paused_at is None:
            return
        seconds = recheck_seconds(paused_at, now)
        # Its message is alive: keep the sweeper's mark ahead, so it neither re-sends copies of a job that is only
        # waiting nor ends a retrying one as orphaned (one write per MARK_AHEAD_SECONDS / 2 at most).
        if job.sweep_at is not None and parse_iso_ms(job.sweep_at) < now + MARK_AHEAD_SECONDS * 500:
            self.repo.move_sweep_mark(job, iso(now + MARK_AHEAD_SECONDS * 1000))
        logger.info("job type is paused; job waits", extra={"type": job.type, "again_in_s": seconds})
        self._throttled(message, job, source_arn, receipt_handle, seconds, event="JobsPausedWaits")

    def _throttled(
        self,
        message: JobMessage,
        job: Job,
        source_arn: str,
        receipt_handle: str,
        seconds: int,
        event: str = "JobsThrottled",
    ) -> None:
        """Put the message back for later without counting an attempt; always raises or returns THROTTLED."""
        self.events(event, 1)
        seconds = max(1, seconds)
        if source_arn.endswith(".fifo"):
            # An ordered group keeps its place: the message itself waits (its receive count grows, which the
            # ordered queue's redrive allows for: see infra/config.py).
            self.queue.defer(source_arn, receipt_handle, seconds)
            raise JobDeferred(f"type '{job.type}' is over its limit or paused; again in {seconds}s")
        # Elsewhere a fresh copy comes back later and this one is deleted, so waiting never counts towards the
        # queue's maxReceiveCount however long the backlog.
        self.queue.send(message, delay_seconds=seconds, priority=job.priority, group_id=job.group_id)
        raise _Throttled(seconds)

    @staticmethod
    def _wait_before_start(job: Job, now: int) -> int | None:
        """Milliseconds until the job may start (0: now), or None when this message has nothing to do."""
        if job.status.is_final or job.status == JobStatus.WAITING:
            return None  # a waiting job is sent again when its dependencies release it
        if job.status == JobStatus.PROCESSING:
            # Another consumer holds a live lease: this copy comes back just after the lease ends, when the job is
            # either final (the copy is dropped then) or its holder has died (the copy takes over). Deleting it now
            # could leave the job with no message at all, should the holder die after its own copy was deleted.
            if job.lease_until_ms is not None and job.lease_until_ms > now:
                return job.lease_until_ms - now + EARLY_TOLERANCE_MS
            return 0
        if job.status == JobStatus.SCHEDULED and job.run_at is not None:
            return max(0, parse_iso_ms(job.run_at) - now)
        if job.status == JobStatus.RETRYING and job.next_attempt_at_ms is not None:
            return max(0, job.next_attempt_at_ms - now)
        return 0

    # --- running it ---

    def _run(self, job: Job, body: str, source_arn: str, receipt_handle: str, budget_ms: int) -> Outcome:
        reporter = ProgressReporter(self.repo, job, self.clock, self.job_settings.progress_interval_seconds)
        try:
            deadline_ms = self.clock() + budget_ms
            if job.timeout_seconds is None:
                # No timeout of its own: the attempt runs on this thread to its end, bounded by the invocation's
                # own timeout (the lease runs out and the message comes back, as for a crash), so no abandoned
                # thread can act after its outcome is recorded.
                result = self._execute(job, reporter, deadline_ms)
            else:
                result = _within(budget_ms, lambda: self._execute(job, reporter, deadline_ms))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job, then decided below
            return self._after_failure(job, exc, reporter.latest, body, source_arn, receipt_handle)
        now = self.clock()
        completed = job.complete(iso(now), result, reporter.latest)
        if not self._save_final(job, completed, now):
            return Outcome.DROPPED
        return Outcome.COMPLETED

    def _execute(self, job: Job, reporter: ProgressReporter, deadline_ms: int) -> Any:
        try:
            data = full_payload(job, self.files() if self.files and job.payload_ref else None)
        except FileNotFound as exc:
            # No retry brings a deleted object back; any other S3 error is retried like any failure.
            raise _Permanent(f"cannot run this job: its payload is gone ({exc})") from exc
        try:
            job_type = get_job_type(job.type)
            payload = job_type.parse_payload(data, self.job_settings)
        except ApiError as exc:
            raise _Permanent(f"cannot run this job: {exc.message}") from exc
        context = JobContext(
            job_id=job.id,
            tenant=job.tenant,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            logger=logger,
            settings=self.job_settings,
            deadline_ms=deadline_ms,
            report_progress=reporter,
        )
        result = job_type.handler(payload, context)
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise _Permanent(f"the job's result is not JSON-serialisable: {exc}") from exc
        return result

    def _after_failure(
        self,
        job: Job,
        exc: Exception,
        progress: Progress | None,
        body: str,
        source_arn: str,
        receipt_handle: str,
    ) -> Outcome:
        retryable = exc.retryable if isinstance(exc, JobFailure) else not isinstance(exc, _Permanent)
        error = _describe(exc)
        now = self.clock()
        if retryable and job.attempts < job.max_attempts:
            delay = backoff_seconds(
                job.attempts, self.settings.backoff_base_seconds, self.settings.backoff_cap_seconds, self.rng
            )
            retrying = job.retry_later(iso(now), error, next_attempt_at_ms=now + delay * 1000, progress=progress)
            retrying = mark_in_flight(retrying, self.job_settings.in_flight_grace_seconds)
            if not self._save_outcome(job, retrying):
                return Outcome.DROPPED
            self.events("JobsRetried", 1)
            logger.info("attempt failed; retrying", extra={"attempt": job.attempts, "delay_s": delay, "error": error})
            self.queue.defer(source_arn, receipt_handle, delay)
            raise JobDeferred(f"attempt {job.attempts} failed; next attempt in {delay}s")
        logger.warning("job failed", extra={"attempt": job.attempts, "error": error, "retryable": retryable})
        if not self._fail(job, now, error, body, source_arn, progress):
            return Outcome.DROPPED
        return Outcome.FAILED

    def _fail(
        self, job: Job, now: int, error: str, body: str, source_arn: str, progress: Progress | None = None
    ) -> bool:
        """Record the job as failed and copy its message to the DLQ (before anything that may raise after)."""
        failed = job.fail(iso(now), error, progress)
        return self._save_final(job, failed, now, then=lambda: self._dead_letter(body, error, source_arn))

    def _save_final(self, before: Job, after: Job, now: int, then: Callable[[], None] | None = None) -> bool:
        """Record a final status; run ``then``; then the completion callback goes out and the batch is looked at.

        The last step may raise (its batch could not be read): the message then comes back, finds the job final
        and looks at the batch again, so ``then`` (the DLQ copy) must already be done by then."""
        after = callbacks.arm(mark_in_flight(after, 0), now, self.job_settings.pending_grace_seconds)
        after = job_cost.record_final(before, after)
        if not self._save_outcome(before, after):
            return False
        if after.status == JobStatus.FAILED:
            self.events("JobsFailed", 1)
        if then is not None:
            then()
        saved = after.model_copy(update={"version": before.version + 1})
        if saved.callback is not None:
            callbacks.send(self.queue, saved)
        self.after_final(saved)
        return True

    def _dead_letter(self, body: str, reason: str, source_arn: str) -> None:
        # The record says "failed"; the DLQ of the message's lane keeps it for operators (inspect, redrive).
        self.queue.dead_letter(body, reason or "failed", source_arn=source_arn)

    def _save_outcome(self, before: Job, after: Job) -> bool:
        try:
            self.repo.save(before, after)
        except ConcurrentUpdate:
            # Our lease expired and another delivery took the job over (or it was changed by hand): theirs stands.
            logger.warning("outcome not recorded: the job changed during the attempt", extra={"status": after.status})
            return False
        return True


def _attempt_budget_ms(job: Job, remaining_ms: int) -> int:
    """How long this attempt may run: its ``timeoutSeconds``, at most the invocation's remaining time less what
    recording the outcome takes (a job without a timeout gets all of that)."""
    invocation_ms = remaining_ms - OUTCOME_RESERVE_MS if remaining_ms > 2 * OUTCOME_RESERVE_MS else remaining_ms // 2
    invocation_ms = max(1, invocation_ms)
    if job.timeout_seconds is None:
        return invocation_ms
    return min(job.timeout_seconds * 1000, invocation_ms)


def _within(budget_ms: int, attempt: Callable[[], Any]) -> Any:
    """``attempt()``'s result, or ``RetryableJobError("timed out after N s")`` once it has run ``budget_ms``.

    A Python thread cannot be stopped, so the attempt runs in a thread of its own and is no longer waited for at
    the deadline: the caller then records the failed attempt, which moves the record's version on. Whatever the
    abandoned thread does later cannot land: its result is never read, and its progress writes are conditional on
    the version it started with. It runs in a copy of the caller's context (the record's log keys)."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, attempt()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, which raises it
            outcome.append((False, exc))

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(run,), name="attempt", daemon=True)
    worker.start()
    worker.join(budget_ms / 1000)
    if not outcome:
        raise _TimedOut(f"timed out after {max(1, math.ceil(budget_ms / 1000))} s")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


class _TimedOut(JobFailure):
    """The attempt ran past its ``timeoutSeconds`` (or the invocation's time): a failed attempt, retried."""


class _Throttled(Exception):
    """The job is over its type's limit and a copy of its message was re-sent with a delay."""


class _Permanent(Exception):
    """Raised inside the consumer for failures that no retry can fix (unknown type, bad payload, bad result)."""


def _describe(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, (JobFailure, _Permanent)) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_LENGTH]
