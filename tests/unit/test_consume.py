"""MessageConsumer.handle: the record, not the message, decides; every transition is a conditional write."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from typing import Any

import pytest

from functions.logic.consume import OUTCOME_RESERVE_MS, ConsumerSettings, JobDeferred, MessageConsumer, Outcome
from functions.logic.job_types import JobContext
from functions.models.errors import ConcurrentUpdate, PermanentJobError, RetryableJobError
from functions.models.job import HistoryEntry, Job, JobMessage, JobStatus
from functions.settings import Settings
from tests.unit.fakes import (
    DeadLetter,
    Deferred,
    FakeClock,
    InMemoryJobsRepository,
    RecordingQueue,
    RegisterJobType,
    make_job,
    message_body,
)

SETTINGS = ConsumerSettings(backoff_base_seconds=1, backoff_cap_seconds=4)
SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-queue"
RECEIPT = "receipt-1"
REMAINING_MS = 30_000
TENANT = "tenant-a"
OK_PAYLOAD = {"target": "cat.png", "durationMs": 0, "failureRate": 0.0}
FAIL_PAYLOAD = {"target": "cat.png", "durationMs": 0, "failureRate": 0.0, "shouldFail": True}
SHOULD_FAIL_ERROR = "Simulated failure of resize (shouldFail)"


class _CeilingRng(random.Random):
    """Jitter at its top: the backoff is exactly the ceiling (1, 2, 4, 4, ... s with base 1 and cap 4)."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Events:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, float]] = []

    def __call__(self, name: str, value: float) -> None:
        self.emitted.append((name, value))

    def names(self) -> list[str]:
        return [name for name, _ in self.emitted]


@pytest.fixture
def events() -> _Events:
    return _Events()


@pytest.fixture
def consumer(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, events: _Events) -> MessageConsumer:
    return MessageConsumer(repo=repo, queue=queue, clock=clock, settings=SETTINGS, events=events, rng=_CeilingRng())


def _store(repo: InMemoryJobsRepository, job: Job) -> Job:
    repo.create(job)
    return job


def _deliver(consumer: MessageConsumer, job: Job, body: str | None = None) -> Outcome:
    return consumer.handle(body or message_body(job), SOURCE_ARN, RECEIPT, REMAINING_MS)


def _reload(repo: InMemoryJobsRepository, job: Job) -> Job:
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


def _trail(job: Job) -> list[tuple[str, int | None]]:
    return [(entry.status.value, entry.attempt) for entry in job.history]


# --- success ---


def test_a_successful_attempt_completes_the_job_with_its_result_and_history(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a pending simulate job that cannot fail
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    clock.advance(2)
    # When its message is delivered
    outcome = _deliver(consumer, job)
    # Then the job is completed with the simulated result after one attempt
    assert outcome is Outcome.COMPLETED
    done = _reload(repo, job)
    assert done.status == JobStatus.COMPLETED
    assert done.result == "Resized cat.png to 800x600 (simulated)"
    assert done.attempts == 1
    assert done.error is None
    assert done.started_at == done.completed_at == done.updated_at == clock.iso()
    # And the history reads pending -> processing (attempt 1) -> completed
    assert _trail(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    # And the bookkeeping is cleared: no lease, no sweep mark
    assert (done.lease_until_ms, done.sweep_at, done.next_attempt_at_ms) == (None, None, None)
    # And the message is simply deleted: nothing deferred or dead-lettered
    assert (queue.defers, queue.dead_letters) == ([], [])


def test_a_completed_job_moves_the_counters_from_pending_to_completed(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    _deliver(consumer, job)
    counters = repo.counters(TENANT)
    assert (counters["pending"], counters["processing"], counters["completed"], counters["enqueued"]) == (0, 0, 1, 1)


def test_the_log_keys_of_a_record_are_its_own_while_it_runs_and_gone_after(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given a job whose run looks at the consumer's log keys
    from functions.logic.consume import logger

    seen: list[dict[str, object]] = []
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    original_run = consumer._run

    def run_and_look(*args: Any, **kwargs: Any) -> Outcome:
        seen.append(dict(logger.thread_safe_get_current_keys()))
        return original_run(*args, **kwargs)

    consumer._run = run_and_look  # type: ignore[method-assign]
    # When its message is handled
    _deliver(consumer, job)
    # Then its lines carried its job id and tenant, and no later line on this thread does
    assert seen and (seen[0]["correlation_id"], seen[0]["tenant"]) == (job.id, job.tenant)
    assert "correlation_id" not in logger.thread_safe_get_current_keys()


def test_a_job_that_succeeds_emits_no_metric(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, events: _Events
) -> None:
    # Given a job that succeeds
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    # When its message is handled
    _deliver(consumer, job)
    # Then it ends completed without a custom metric: /stats counts it exactly, and its queue's and Lambda's own
    # metrics (messages received and deleted, invocations, duration) show the flow for free
    assert _reload(repo, job).status == JobStatus.COMPLETED
    assert events.names() == []


def test_while_the_attempt_runs_the_record_is_processing_with_a_lease_of_the_remaining_time(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a job type that looks at its own record while it runs
    seen: list[Job] = []

    deadlines: list[int | None] = []

    def peek(payload: Any, ctx: JobContext) -> str:
        seen.append(_reload(repo, job))
        deadlines.append(ctx.deadline_ms)
        return f"attempt {ctx.attempt} of {ctx.max_attempts}"

    job = _store(repo, make_job(clock, job_type=register_job_type("peek", peek), payload={}, max_attempts=4))
    # When it is delivered
    outcome = _deliver(consumer, job)
    # Then during the attempt the record said processing, attempt 1, leased for the invocation's remaining time
    assert outcome is Outcome.COMPLETED
    assert seen[0].status == JobStatus.PROCESSING
    assert seen[0].attempts == 1
    assert seen[0].lease_until_ms == clock() + REMAINING_MS
    # And the handler knows its deadline (long jobs stop in time): the invocation's, less the time to record it
    assert deadlines == [clock() + REMAINING_MS - OUTCOME_RESERVE_MS]
    assert _reload(repo, job).result == "attempt 1 of 4"


# --- failures ---


def test_a_retryable_failure_with_attempts_left_records_retrying_and_defers_the_message(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, events: _Events
) -> None:
    # Given a job that always fails, with 3 attempts
    job = _store(repo, make_job(clock, payload=FAIL_PAYLOAD, max_attempts=3))
    # When its first attempt runs
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then the record is retrying, with the error and the time of the next attempt (backoff 1 s for attempt 1)
    retrying = _reload(repo, job)
    assert retrying.status == JobStatus.RETRYING
    assert retrying.attempts == 1
    assert retrying.error == SHOULD_FAIL_ERROR
    assert retrying.next_attempt_at_ms == clock() + 1000
    assert retrying.lease_until_ms is None
    assert retrying.history[-1] == HistoryEntry(
        status=JobStatus.RETRYING, at=clock.iso(), attempt=1, error=SHOULD_FAIL_ERROR
    )
    # And the message's visibility is set to the backoff so it comes back when due
    assert queue.defers == [Deferred(SOURCE_ARN, RECEIPT, 1)]
    assert queue.dead_letters == []
    assert repo.counters(TENANT)["retrying"] == 1
    assert "JobsRetried" in events.names()


def test_the_last_attempt_failing_marks_the_job_failed_and_dead_letters_the_message(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a failing job on its last attempt (2 of 3 used, backoff elapsed)
    job = _store(
        repo,
        make_job(clock, payload=FAIL_PAYLOAD, status=JobStatus.RETRYING, attempts=2, next_attempt_at_ms=clock()),
    )
    body = message_body(job)
    # When attempt 3 fails
    outcome = _deliver(consumer, job, body)
    # Then the job is failed after exactly 3 attempts, with the error
    assert outcome is Outcome.FAILED
    failed = _reload(repo, job)
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == 3
    assert failed.error == SHOULD_FAIL_ERROR
    assert failed.completed_at == clock.iso()
    assert _trail(failed)[-2:] == [("processing", 3), ("failed", 3)]
    # And the message goes to the DLQ (not deferred)
    assert [letter.body for letter in queue.dead_letters] == [body]
    assert queue.defers == []
    assert (repo.counters(TENANT)["failed"], repo.counters(TENANT)["retrying"]) == (1, 0)


def test_max_attempts_one_fails_on_the_first_failure(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    job = _store(repo, make_job(clock, payload=FAIL_PAYLOAD, max_attempts=1))
    assert _deliver(consumer, job) is Outcome.FAILED
    assert _reload(repo, job).attempts == 1
    assert len(queue.dead_letters) == 1


def test_a_permanent_error_fails_the_job_at_once_without_retry(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
) -> None:
    # Given a job type that finds its input unusable, and a job with 5 attempts
    def reject(payload: Any, ctx: JobContext) -> None:
        raise PermanentJobError("the image is corrupt")

    job = _store(repo, make_job(clock, job_type=register_job_type("reject", reject), payload={}, max_attempts=5))
    # When it runs
    outcome = _deliver(consumer, job)
    # Then it fails at attempt 1, no retry is scheduled, and the message is dead-lettered
    assert outcome is Outcome.FAILED
    failed = _reload(repo, job)
    assert (failed.status, failed.attempts, failed.error) == (JobStatus.FAILED, 1, "the image is corrupt")
    assert queue.defers == []
    assert len(queue.dead_letters) == 1


@pytest.mark.parametrize("previous_error", [None, "timeout on attempt 1"])
def test_the_dead_letter_reason_is_the_error_that_failed_the_job(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    previous_error: str | None,
) -> None:
    # Given a failing job on its last attempt, possibly with the error of an earlier attempt on record
    job = _store(
        repo,
        make_job(
            clock,
            payload=FAIL_PAYLOAD,
            status=JobStatus.RETRYING,
            attempts=2,
            next_attempt_at_ms=clock(),
            error=previous_error,
        ),
    )
    # When the last attempt fails
    _deliver(consumer, job)
    # Then the DLQ message says why: the error now on the record
    assert _reload(repo, job).error == SHOULD_FAIL_ERROR
    assert [letter.reason for letter in queue.dead_letters] == [SHOULD_FAIL_ERROR]


def test_an_unexpected_exception_type_is_retryable(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
) -> None:
    # Given a job type that crashes with a plain exception
    def crash(payload: Any, ctx: JobContext) -> None:
        raise ValueError("boom")

    job = _store(repo, make_job(clock, job_type=register_job_type("crash", crash), payload={}, max_attempts=3))
    # When it runs
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then it is retried, and the error names the exception type
    retrying = _reload(repo, job)
    assert retrying.status == JobStatus.RETRYING
    assert retrying.error == "ValueError: boom"
    assert len(queue.defers) == 1


def test_a_retryable_job_error_keeps_its_message_without_the_type_name(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    def throttled(payload: Any, ctx: JobContext) -> None:
        raise RetryableJobError("remote said 503")

    job = _store(repo, make_job(clock, job_type=register_job_type("throttled", throttled), payload={}))
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    assert _reload(repo, job).error == "remote said 503"


def test_a_very_long_error_is_truncated_on_the_record(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    def verbose(payload: Any, ctx: JobContext) -> None:
        raise RetryableJobError("x" * 5000)

    job = _store(repo, make_job(clock, job_type=register_job_type("verbose", verbose), payload={}))
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    assert len(_reload(repo, job).error or "") == 1000


@pytest.mark.parametrize(
    ("job_type", "payload", "error_part"),
    [
        ("vanished-type", {}, "cannot run this job"),
        ("simulate", {"target": ""}, "cannot run this job"),
    ],
)
def test_a_record_whose_type_or_payload_no_longer_validates_fails_permanently(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    job_type: str,
    payload: dict[str, Any],
    error_part: str,
) -> None:
    job = _store(repo, make_job(clock, job_type=job_type, payload=payload, max_attempts=5))
    assert _deliver(consumer, job) is Outcome.FAILED
    failed = _reload(repo, job)
    assert failed.attempts == 1
    assert error_part in (failed.error or "")
    assert len(queue.dead_letters) == 1


def test_a_result_that_is_not_json_fails_permanently(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    job = _store(repo, make_job(clock, job_type=register_job_type("setty", lambda p, c: {1, 2}), payload={}))
    assert _deliver(consumer, job) is Outcome.FAILED
    assert "JSON" in (_reload(repo, job).error or "")


# --- timeouts ---


class _Stalling:
    """A job type whose first attempt blocks until released, then reports progress and returns a result; later
    attempts return at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, payload: Any, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            self.release.wait(10)
            ctx.report_progress(100, "late")
            self.finished.set()
            return "late result of attempt 1"
        return f"result of attempt {ctx.attempt}"


def _stalling_job(
    repo: InMemoryJobsRepository, clock: FakeClock, register: RegisterJobType, **fields: Any
) -> tuple[_Stalling, Job]:
    stalling = _Stalling()
    return stalling, _store(repo, make_job(clock, job_type=register("stalling", stalling), payload={}, **fields))


def test_an_attempt_past_its_timeout_fails_and_is_retried_and_its_late_result_is_discarded(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
) -> None:
    # Given a job with timeoutSeconds 1 whose first attempt runs longer
    stalling, job = _stalling_job(repo, clock, register_job_type, max_attempts=3, timeout_seconds=1)
    # When its message is delivered
    started = time.monotonic()
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then the consumer stopped waiting after about a second
    assert 0.9 <= time.monotonic() - started < 5
    # And the attempt is a failed attempt "timed out after 1 s", retried by the usual backoff (1 s after attempt 1)
    retrying = _reload(repo, job)
    assert retrying.status == JobStatus.RETRYING
    assert retrying.error == "timed out after 1 s"
    assert _trail(retrying) == [("pending", None), ("processing", 1), ("retrying", 1)]
    assert queue.defers == [Deferred(SOURCE_ARN, RECEIPT, 1)]
    # When the timed-out attempt finishes late, reporting progress and returning a result
    stalling.release.set()
    assert stalling.finished.wait(5)
    time.sleep(0.05)  # the abandoned thread returns its result
    # Then nothing of it lands on the record
    assert _reload(repo, job) == retrying
    # And the next attempt runs and its result is the one recorded
    clock.advance(1)
    assert _deliver(consumer, job) is Outcome.COMPLETED
    done = _reload(repo, job)
    assert (done.status, done.result, done.attempts, done.progress) == (
        JobStatus.COMPLETED,
        "result of attempt 2",
        2,
        None,
    )


def test_a_last_attempt_past_its_timeout_fails_the_job(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
) -> None:
    # Given a one-attempt job with timeoutSeconds 1 that runs longer
    stalling, job = _stalling_job(repo, clock, register_job_type, max_attempts=1, timeout_seconds=1)
    try:
        # When it runs
        outcome = _deliver(consumer, job)
    finally:
        stalling.release.set()
    # Then the job failed with the timeout's error, and its message went to the DLQ
    assert outcome is Outcome.FAILED
    failed = _reload(repo, job)
    assert (failed.status, failed.error, failed.result) == (JobStatus.FAILED, "timed out after 1 s", None)
    assert [letter.reason for letter in queue.dead_letters] == ["timed out after 1 s"]


def test_without_a_timeout_an_attempt_runs_on_the_consumers_thread_to_its_end(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a job without timeoutSeconds that notes the thread it runs on and its deadline
    seen: list[tuple[str, int | None]] = []

    def noting(payload: Any, ctx: JobContext) -> str:
        seen.append((threading.current_thread().name, ctx.deadline_ms))
        return "done"

    job = _store(repo, make_job(clock, job_type=register_job_type("noting", noting), payload={}))
    # When it runs with 2.5 s left in the invocation
    assert consumer.handle(message_body(job), SOURCE_ARN, RECEIPT, 2500) is Outcome.COMPLETED
    # Then it ran on the consumer's own thread (nothing is left running after its outcome), and its deadline is the
    # invocation's time less the reserve for recording the outcome
    assert seen == [(threading.current_thread().name, clock() + 1500)]


def test_an_attempt_within_its_timeout_completes_and_knows_its_deadline(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a job with timeoutSeconds 5 that looks at its deadline
    deadlines: list[int | None] = []

    def quick(payload: Any, ctx: JobContext) -> str:
        deadlines.append(ctx.deadline_ms)
        return "done"

    job = _store(repo, make_job(clock, job_type=register_job_type("quick", quick), payload={}, timeout_seconds=5))
    # When it runs
    assert _deliver(consumer, job) is Outcome.COMPLETED
    # Then its deadline was its timeout, not the invocation's (longer) remaining time
    assert deadlines == [clock() + 5000]
    assert _reload(repo, job).result == "done"


def test_a_crash_inside_the_attempt_thread_still_reaches_the_consumer(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a job whose handler dies with a BaseException (the runtime going away)
    def dying(payload: Any, ctx: JobContext) -> str:
        raise KeyboardInterrupt

    job = _store(repo, make_job(clock, job_type=register_job_type("dying", dying), payload={}, timeout_seconds=5))
    # When it runs, then the exception ends the record's handling as it would without the thread
    with pytest.raises(KeyboardInterrupt):
        _deliver(consumer, job)
    assert _reload(repo, job).status == JobStatus.PROCESSING


# --- duplicates and late messages ---


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED])
def test_a_duplicate_message_of_a_finished_job_is_dropped_and_nothing_is_written(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    status: JobStatus,
    events: _Events,
) -> None:
    # Given a job already in a final state
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD, status=status, attempts=1))
    writes = repo.writes
    # When a late copy of its message arrives
    outcome = _deliver(consumer, job)
    # Then it is dropped: no write, no queue call, the record is unchanged
    assert outcome is Outcome.DROPPED
    assert repo.writes == writes
    assert _reload(repo, job) == job
    assert (queue.sends, queue.defers, queue.dead_letters) == ([], [], [])
    assert events.names() == ["DuplicateMessages"]


def test_a_duplicate_while_another_consumer_holds_a_live_lease_waits_for_the_lease_to_end(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job being processed by another consumer whose lease runs 10 more seconds
    job = _store(
        repo,
        make_job(clock, payload=OK_PAYLOAD, status=JobStatus.PROCESSING, attempts=1, lease_until_ms=clock() + 10_000),
    )
    writes = repo.writes
    # When a second copy of the message arrives
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then the other consumer's attempt is untouched, and this copy comes back just after the lease ends
    assert repo.writes == writes
    assert _reload(repo, job).attempts == 1
    assert queue.defers == [Deferred(SOURCE_ARN, RECEIPT, 11)]
    assert queue.dead_letters == []


def test_the_waiting_copy_finds_the_job_final_and_is_dropped(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a copy deferred during another consumer's attempt, which then completed the job
    job = _store(
        repo,
        make_job(clock, payload=OK_PAYLOAD, status=JobStatus.PROCESSING, attempts=1, lease_until_ms=clock() + 10_000),
    )
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    repo.save(job, job.model_copy(update={"status": JobStatus.COMPLETED, "lease_until_ms": None}))
    clock.advance(seconds=11)
    # When it comes back, it is dropped
    assert _deliver(consumer, job) is Outcome.DROPPED


def test_an_expired_lease_with_attempts_left_starts_a_new_attempt_noting_the_interruption(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given attempt 1 of 3 whose consumer died (its lease ran out a moment ago)
    started = make_job(clock, payload=OK_PAYLOAD)
    job = _store(
        repo,
        started.model_copy(
            update={
                "status": JobStatus.PROCESSING,
                "attempts": 1,
                "lease_until_ms": clock() - 1,
                "history": (*started.history, HistoryEntry(status=JobStatus.PROCESSING, at=clock.iso(), attempt=1)),
            }
        ),
    )
    # When the message comes back after its visibility timeout
    outcome = _deliver(consumer, job)
    # Then attempt 2 runs and completes, and the history records why attempt 1 ended
    assert outcome is Outcome.COMPLETED
    done = _reload(repo, job)
    assert done.attempts == 2
    assert _trail(done) == [("pending", None), ("processing", 1), ("retrying", 1), ("processing", 2), ("completed", 2)]
    interruption = done.history[2]
    assert interruption.error is not None
    assert "attempt 1 did not finish" in interruption.error


def test_an_expired_lease_on_the_last_attempt_fails_the_job_and_dead_letters_it(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
) -> None:
    # Given the last of 3 attempts died mid-run
    runs: list[int] = []
    kind = register_job_type("counted", lambda payload, ctx: runs.append(ctx.attempt))
    job = _store(
        repo,
        make_job(clock, job_type=kind, payload={}, status=JobStatus.PROCESSING, attempts=3, lease_until_ms=clock() - 1),
    )
    # When its message comes back
    outcome = _deliver(consumer, job)
    # Then the job is not run a 4th time: it is failed, and the message goes to the DLQ (and is deleted here)
    assert outcome in {Outcome.FAILED, Outcome.DROPPED}
    assert runs == []
    failed = _reload(repo, job)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 3)
    assert "did not finish" in (failed.error or "")
    assert len(queue.dead_letters) == 1
    assert queue.defers == []


# --- schedules and backoff ---


def test_a_scheduled_job_delivered_early_is_deferred_for_the_remaining_time(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job scheduled 60 s ahead
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD, status=JobStatus.SCHEDULED, run_at=clock.iso(60)))
    writes = repo.writes
    # When its message arrives 10 s later
    clock.advance(10)
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then the message is hidden for the remaining 50 s and the record is untouched
    assert queue.defers == [Deferred(SOURCE_ARN, RECEIPT, 50)]
    assert repo.writes == writes
    assert _reload(repo, job).status == JobStatus.SCHEDULED


def test_a_scheduled_job_delivered_on_time_goes_through_pending_to_processing(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given a job scheduled 60 s ahead
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD, status=JobStatus.SCHEDULED, run_at=clock.iso(60)))
    # When its message arrives at runAt
    clock.advance(60)
    outcome = _deliver(consumer, job)
    # Then it runs, and the history shows scheduled -> pending -> processing -> completed
    assert outcome is Outcome.COMPLETED
    done = _reload(repo, job)
    assert _trail(done) == [("scheduled", None), ("pending", None), ("processing", 1), ("completed", 1)]
    assert done.history[1].at == clock.iso()
    counters = repo.counters(TENANT)
    assert (counters["scheduled"], counters["completed"]) == (0, 1)


def test_a_scheduled_job_delivered_less_than_a_second_early_runs(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # SQS delays are whole seconds: a message up to 1 s early is run, not bounced for a few milliseconds
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD, status=JobStatus.SCHEDULED, run_at=clock.iso(60)))
    clock.advance(59.5)
    assert _deliver(consumer, job) is Outcome.COMPLETED
    assert queue.defers == []


def test_a_retrying_job_delivered_before_its_backoff_is_deferred_then_runs_when_due(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job waiting 3 s before attempt 2
    job = _store(
        repo,
        make_job(clock, payload=OK_PAYLOAD, status=JobStatus.RETRYING, attempts=1, next_attempt_at_ms=clock() + 3000),
    )
    # When its message arrives now
    with pytest.raises(JobDeferred):
        _deliver(consumer, job)
    # Then it is hidden for the 3 s left and no attempt is used
    assert queue.defers == [Deferred(SOURCE_ARN, RECEIPT, 3)]
    assert _reload(repo, job).attempts == 1
    # When it arrives again once the backoff has passed
    clock.advance(3)
    outcome = _deliver(consumer, job)
    # Then attempt 2 runs
    assert outcome is Outcome.COMPLETED
    done = _reload(repo, job)
    assert done.attempts == 2
    assert done.next_attempt_at_ms is None


# --- malformed and orphan messages ---


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "",
        "[]",
        "{}",
        '{"tenant": "tenant-a"}',
        '{"jobId": "abc"}',
        '{"tenant": "", "jobId": "abc"}',
        '{"tenant": "tenant-a", "jobId": 5}',
    ],
)
def test_a_malformed_message_is_dead_lettered_without_failing_the_batch(
    consumer: MessageConsumer, queue: RecordingQueue, body: str, events: _Events
) -> None:
    # When a message that is not a job pointer arrives
    outcome = consumer.handle(body, SOURCE_ARN, RECEIPT, REMAINING_MS)
    # Then it goes to the DLQ and the call returns (the message is deleted, its neighbours unaffected)
    assert outcome is Outcome.DEAD_LETTERED
    assert queue.dead_letters == [DeadLetter(body, "malformed message", SOURCE_ARN)]
    assert events.names() == ["MalformedMessages"]


def test_a_message_for_an_unknown_job_is_dropped(
    consumer: MessageConsumer, queue: RecordingQueue, clock: FakeClock
) -> None:
    ghost = make_job(clock)  # never stored
    assert _deliver(consumer, ghost) is Outcome.DROPPED
    assert (queue.defers, queue.dead_letters) == ([], [])


def test_a_message_naming_another_tenant_does_not_reach_the_job(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    forged = make_job(clock, tenant="tenant-b")  # same id, other tenant
    assert _deliver(consumer, job, message_body(forged)) is Outcome.DROPPED
    assert _reload(repo, job).status == JobStatus.PENDING


# --- a full retry cycle ---


def _drive(
    consumer: MessageConsumer, queue: RecordingQueue, clock: FakeClock, job: Job, duplicates: int = 0
) -> tuple[Outcome, int]:
    """Deliver the job's message as SQS would until the consumer lets it go; returns (outcome, deliveries)."""
    deliveries = 0
    while True:
        deliveries += 1
        assert deliveries < 100, "the message never left the queue"
        try:
            for _ in range(duplicates):
                # A duplicate copy arriving early (while the job waits) must not use up an attempt.
                with contextlib.suppress(JobDeferred):
                    _deliver(consumer, job)
            return _deliver(consumer, job), deliveries
        except JobDeferred:
            clock.advance(queue.defers[-1].seconds)


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5, 25])
def test_a_job_that_always_fails_runs_exactly_max_attempts_times(
    consumer: MessageConsumer,
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    register_job_type: RegisterJobType,
    max_attempts: int,
) -> None:
    # Given a job type that always fails retryably
    runs: list[int] = []

    def flaky(payload: Any, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise RetryableJobError(f"down on attempt {ctx.attempt}")

    job = _store(
        repo, make_job(clock, job_type=register_job_type("flaky", flaky), payload={}, max_attempts=max_attempts)
    )
    # When its message is redelivered after every backoff until the consumer lets it go
    outcome, _ = _drive(consumer, queue, clock, job)
    # Then it ran exactly max_attempts times, numbered 1..max, and ended failed in the DLQ
    assert outcome is Outcome.FAILED
    assert runs == list(range(1, max_attempts + 1))
    failed = _reload(repo, job)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, max_attempts)
    assert [entry.attempt for entry in failed.history if entry.status == JobStatus.PROCESSING] == runs
    assert len([entry for entry in failed.history if entry.status == JobStatus.RETRYING]) == max_attempts - 1
    assert len(queue.dead_letters) == 1
    # And the backoff followed base 1 s doubling to the 4 s cap
    assert [defer.seconds for defer in queue.defers] == [min(4, 2 ** (n - 1)) for n in range(1, max_attempts)]


def test_duplicate_copies_during_backoff_never_add_attempts(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job that always fails, with 4 attempts, and every delivery accompanied by two duplicate copies
    job = _store(repo, make_job(clock, payload=FAIL_PAYLOAD, max_attempts=4))
    # When the messages are delivered until none is left
    outcome, _ = _drive(consumer, queue, clock, job, duplicates=2)
    # Then attempts stop at exactly 4
    assert outcome in {Outcome.FAILED, Outcome.DROPPED}
    failed = _reload(repo, job)
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == 4
    assert max(entry.attempt or 0 for entry in failed.history) == 4
    assert len(queue.dead_letters) == 1


def test_a_flaky_simulate_job_ends_completed_or_failed_within_its_attempts(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given 30 simulate jobs failing half of their attempts
    jobs = [
        _store(
            repo,
            make_job(
                clock,
                job_id=f"00000000-0000-4000-8000-{n:012d}",
                payload={"target": f"{n}.png", "durationMs": 0, "failureRate": 0.5},
                max_attempts=3,
            ),
        )
        for n in range(30)
    ]
    # When each is driven to the end
    outcomes = [_drive(consumer, queue, clock, job)[0] for job in jobs]
    # Then each ends completed or failed, never beyond 3 attempts, and the counters add up
    finals = [_reload(repo, job) for job in jobs]
    assert {final.status for final in finals} == {JobStatus.COMPLETED, JobStatus.FAILED}
    assert all(1 <= final.attempts <= 3 for final in finals)
    assert outcomes.count(Outcome.FAILED) == sum(final.status == JobStatus.FAILED for final in finals)
    counters = repo.counters(TENANT)
    assert counters["completed"] + counters["failed"] == 30
    assert counters["retrying"] == counters["pending"] == counters["processing"] == 0


# --- races ---


def test_a_lost_race_while_claiming_is_decided_again_from_a_fresh_read(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given another writer touching the record just before the consumer's claim is written
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    repo.before_next_save = lambda: repo.touch(TENANT, job.id)
    # When the message is delivered
    outcome = _deliver(consumer, job)
    # Then the consumer re-read the record and ran the job once
    assert outcome is Outcome.COMPLETED
    done = _reload(repo, job)
    assert done.attempts == 1
    assert _trail(done) == [("pending", None), ("processing", 1), ("completed", 1)]


def test_a_job_cancelled_while_being_claimed_is_not_run(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a cancel that lands between the consumer's read and its claim
    runs: list[int] = []
    job = _store(repo, make_job(clock, job_type=register_job_type("counted", lambda p, c: runs.append(1)), payload={}))

    def cancel() -> None:
        current = _reload(repo, job)
        repo.save(current, current.model_copy(update={"status": JobStatus.CANCELLED}))

    repo.before_next_save = cancel
    # When the message is delivered
    outcome = _deliver(consumer, job)
    # Then the fresh read sees the cancel and the job never runs
    assert outcome is Outcome.DROPPED
    assert runs == []
    assert _reload(repo, job).status == JobStatus.CANCELLED


def test_a_claim_that_keeps_losing_races_gives_the_message_back(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a record that changes before every write
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    real_save = repo.save

    def contended_save(before: Job, after: Job) -> None:
        current = _reload(repo, job)
        real_save(current, current)  # the other writer wins
        real_save(before, after)

    monkeypatch.setattr(repo, "save", contended_save)
    # When its message, without the type (an earlier version's: read, decide, write), is delivered, then the
    # consumer gives up (the message returns after its visibility timeout)
    with pytest.raises(ConcurrentUpdate):
        _deliver(consumer, job, body=JobMessage(tenant=job.tenant, jobId=job.id).to_body())
    assert _reload(repo, job).status == JobStatus.PENDING


def test_a_pending_job_is_claimed_without_reading_its_record_and_a_duplicate_decides_from_the_claims_answer(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pending job, and a repository that counts its reads
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    reads: list[str] = []
    real_get = repo.get

    def counted_get(tenant: str, job_id: str) -> Job | None:
        reads.append(job_id)
        return real_get(tenant, job_id)

    monkeypatch.setattr(repo, "get", counted_get)
    # When its message is delivered, then a copy of it
    first = _deliver(consumer, job)
    duplicate = _deliver(consumer, job)

    # Then the job ran once, and neither delivery read the record: the claim's conditional write returned it
    assert (first, duplicate) == (Outcome.COMPLETED, Outcome.DROPPED)
    assert _trail(_reload(repo, job)) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert reads == [job.id]  # this test's own _reload


def test_the_outcome_of_an_attempt_whose_job_was_taken_over_is_not_recorded(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given an attempt so slow that its lease expires and another delivery claims attempt 2 meanwhile
    def slow(payload: Any, ctx: JobContext) -> str:
        current = _reload(repo, job)
        repo.save(current, current.model_copy(update={"attempts": 2}))  # the other consumer's claim
        return "late result"

    job = _store(repo, make_job(clock, job_type=register_job_type("slow", slow), payload={}))
    # When the slow attempt finishes
    outcome = _deliver(consumer, job)
    # Then its result is dropped: the newer attempt's record stands
    assert outcome is Outcome.DROPPED
    current = _reload(repo, job)
    assert (current.status, current.attempts, current.result) == (JobStatus.PROCESSING, 2, None)


def test_a_payload_is_validated_under_the_consumers_settings(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a consumer whose fetch ceiling is lower than the maxBytes a stored fetch job asks for
    consumer = MessageConsumer(repo, queue, clock, SETTINGS, job_settings=Settings(fetch_max_bytes=100))
    job = _store(repo, make_job(clock, job_type="fetch", payload={"url": "https://example.com/", "maxBytes": 101}))
    # When its message arrives
    outcome = _deliver(consumer, job)
    # Then the job fails at once, naming the field, without being run
    assert outcome is Outcome.FAILED
    failed = _reload(repo, job)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    assert "cannot run this job" in (failed.error or "")


def test_a_message_received_before_decides_from_a_read_not_from_a_failed_conditional_write(
    consumer: MessageConsumer, repo: InMemoryJobsRepository, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job already finished, and a repository that counts its reads and claims
    job = _store(repo, make_job(clock, payload=OK_PAYLOAD))
    assert _deliver(consumer, job) is Outcome.COMPLETED
    calls: list[str] = []
    real_get, real_claim = repo.get, repo.claim_pending
    monkeypatch.setattr(repo, "get", lambda *args: calls.append("get") or real_get(*args))
    monkeypatch.setattr(repo, "claim_pending", lambda *args: calls.append("claim") or real_claim(*args))

    # When a copy of its message comes back for the second time (a retry's or a redelivery's)
    outcome = consumer.handle(message_body(job), SOURCE_ARN, RECEIPT, REMAINING_MS, receive_count=2)

    # Then the record was read (a read costs a fifth of the write unit a failed conditional write costs), not claimed
    assert outcome is Outcome.DROPPED
    assert calls == ["get"]
