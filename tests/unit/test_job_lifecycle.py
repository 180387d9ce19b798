"""The job's lifecycle methods: every move the transition table allows works, every other one is refused."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import pytest

from functions.models.errors import InvalidState
from functions.models.job import (
    ALLOWED_TRANSITIONS,
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    RETRYABLE_STATUSES,
    Callback,
    CallbackStatus,
    HistoryEntry,
    Job,
    JobStatus,
    Progress,
)

CREATED = "2026-01-01T00:00:00.000Z"
AT = "2026-01-01T00:01:00.000Z"
LEASE_MS = 1_767_225_720_000
NEXT_ATTEMPT_MS = 1_767_225_730_000
PROGRESS = Progress(percent=40.0, message="4 of 10", at=AT)


def a_job(status: JobStatus, *, attempts: int = 1, max_attempts: int = 3, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": "job-1",
        "tenant": "tenant-a",
        "type": "simulate",
        "payload": {},
        "status": status,
        "priority": 5,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "created_at": CREATED,
        "updated_at": CREATED,
        "history": (HistoryEntry(status=status, at=CREATED),),
    }
    values.update(fields)
    return Job.model_validate(values)


# The lifecycle method that moves a job to each status.
MOVES: dict[JobStatus, Callable[[Job], Job]] = {
    JobStatus.PROCESSING: lambda job: job.start(AT, lease_until_ms=LEASE_MS),
    JobStatus.COMPLETED: lambda job: job.complete(AT, {"ok": True}),
    JobStatus.RETRYING: lambda job: job.retry_later(AT, "boom", next_attempt_at_ms=NEXT_ATTEMPT_MS),
    JobStatus.FAILED: lambda job: job.fail(AT, "boom"),
    JobStatus.CANCELLED: lambda job: job.cancel(AT),
    JobStatus.PENDING: lambda job: job.reset(AT, sweep_at=AT),
}


def move(source: JobStatus, target: JobStatus) -> Callable[[Job], Job]:
    """The method moving a job from ``source`` to ``target``: a waiting job goes to pending by its release."""
    if (source, target) == (JobStatus.WAITING, JobStatus.PENDING):
        return lambda job: job.release(AT, sweep_at=AT)
    return MOVES[target]


ALLOWED = sorted((source, target) for source, targets in ALLOWED_TRANSITIONS.items() for target in targets)
ILLEGAL = sorted(
    (source, target) for source, target in product(JobStatus, MOVES) if target not in ALLOWED_TRANSITIONS[source]
)


def test_the_table_allows_exactly_the_lifecycle_of_a_job() -> None:
    S = JobStatus
    expected = {
        (S.SCHEDULED, S.PROCESSING), (S.SCHEDULED, S.CANCELLED),
        (S.PENDING, S.PROCESSING), (S.PENDING, S.CANCELLED),
        (S.PROCESSING, S.PROCESSING), (S.PROCESSING, S.COMPLETED), (S.PROCESSING, S.RETRYING), (S.PROCESSING, S.FAILED),
        (S.RETRYING, S.PROCESSING), (S.RETRYING, S.CANCELLED), (S.RETRYING, S.FAILED),
        (S.FAILED, S.PENDING),
        (S.CANCELLED, S.PENDING),
        (S.WAITING, S.PENDING), (S.WAITING, S.CANCELLED),
    }  # fmt: skip
    assert set(ALLOWED) == expected


def test_the_table_names_every_status_and_only_reachable_targets() -> None:
    # Then every status has an entry, a completed job moves nowhere, and each target has a method
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)
    assert ALLOWED_TRANSITIONS[JobStatus.COMPLETED] == frozenset()
    assert {target for targets in ALLOWED_TRANSITIONS.values() for target in targets} <= set(MOVES)
    assert JobStatus.SCHEDULED not in {target for targets in ALLOWED_TRANSITIONS.values() for target in targets}


def test_cancellable_and_retryable_statuses_follow_the_table() -> None:
    assert {JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.RETRYING, JobStatus.WAITING} == CANCELLABLE_STATUSES
    assert {JobStatus.FAILED, JobStatus.CANCELLED} == RETRYABLE_STATUSES
    assert not CANCELLABLE_STATUSES & FINAL_STATUSES


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=lambda status: status.value)
def test_each_allowed_transition_moves_the_job_and_appends_its_history(source: JobStatus, target: JobStatus) -> None:
    # Given a job in the source status
    job = a_job(source)
    # When it is moved to the target status
    moved = move(source, target)(job)
    # Then the new job has the target status, was updated now and ends its history with the move; the old is intact
    assert moved.status == target
    assert moved.updated_at == AT
    assert moved.history[: len(job.history)] == job.history
    assert moved.history[-1].status == target
    assert moved.history[-1].at == AT
    assert job.status == source
    assert len(job.history) == 1


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=lambda status: status.value)
def test_each_illegal_transition_is_refused(source: JobStatus, target: JobStatus) -> None:
    # Given a job in the source status
    job = a_job(source)
    # When it is asked to move where the table does not allow, then it refuses with a 409 error
    with pytest.raises(InvalidState) as refused:
        move(source, target)(job)
    assert refused.value.status_code == 409
    assert source.value in refused.value.message


def test_the_refusals_name_what_was_asked() -> None:
    with pytest.raises(InvalidState, match="a completed job cannot be cancelled"):
        a_job(JobStatus.COMPLETED).cancel(AT)
    with pytest.raises(InvalidState, match="only failed or cancelled jobs can be retried, this one is pending"):
        a_job(JobStatus.PENDING).reset(AT, sweep_at=AT)


def test_starting_counts_an_attempt_and_holds_a_lease() -> None:
    # Given a job waiting for its retry
    job = a_job(JobStatus.RETRYING, attempts=1, next_attempt_at_ms=NEXT_ATTEMPT_MS, sweep_at=AT)
    # When it starts
    started = job.start(AT, lease_until_ms=LEASE_MS)
    # Then it is attempt 2, leased, and no longer waiting for anything
    assert (started.attempts, started.started_at, started.lease_until_ms) == (2, AT, LEASE_MS)
    assert (started.next_attempt_at_ms, started.sweep_at) == (None, None)
    assert started.history[-1] == HistoryEntry(status=JobStatus.PROCESSING, at=AT, attempt=2)


def test_a_scheduled_job_passes_through_pending_when_it_starts() -> None:
    started = a_job(JobStatus.SCHEDULED, attempts=0).start(AT, lease_until_ms=LEASE_MS)
    assert [(entry.status, entry.attempt) for entry in started.history[1:]] == [
        (JobStatus.PENDING, None),
        (JobStatus.PROCESSING, 1),
    ]


def test_taking_over_a_dead_attempt_records_why_it_ended() -> None:
    # Given attempt 1 whose consumer died
    job = a_job(JobStatus.PROCESSING, attempts=1, lease_until_ms=LEASE_MS - 1)
    # When a redelivery starts the job again
    started = job.start(AT, lease_until_ms=LEASE_MS)
    # Then attempt 1 is recorded as retrying with the reason, and attempt 2 runs
    interrupted, running = started.history[-2:]
    assert (interrupted.status, interrupted.attempt) == (JobStatus.RETRYING, 1)
    assert interrupted.error == "attempt 1 did not finish (consumer stopped or timed out)"
    assert (running.status, running.attempt, started.attempts) == (JobStatus.PROCESSING, 2, 2)


def test_completing_records_the_result_and_the_last_progress() -> None:
    job = a_job(JobStatus.PROCESSING, lease_until_ms=LEASE_MS, error="earlier")
    completed = job.complete(AT, {"rows": 3}, PROGRESS)
    assert (completed.result, completed.error, completed.completed_at) == ({"rows": 3}, None, AT)
    assert (completed.lease_until_ms, completed.progress) == (None, PROGRESS)
    assert completed.history[-1] == HistoryEntry(status=JobStatus.COMPLETED, at=AT, attempt=1)
    # Without new progress the record's own stays
    assert job.model_copy(update={"progress": PROGRESS}).complete(AT, None).progress == PROGRESS


def test_retrying_later_records_the_error_and_when_to_try_again() -> None:
    retrying = a_job(JobStatus.PROCESSING, lease_until_ms=LEASE_MS).retry_later(AT, "boom", NEXT_ATTEMPT_MS)
    assert (retrying.error, retrying.next_attempt_at_ms, retrying.lease_until_ms) == ("boom", NEXT_ATTEMPT_MS, None)
    assert retrying.history[-1] == HistoryEntry(status=JobStatus.RETRYING, at=AT, attempt=1, error="boom")


def test_the_last_attempt_cannot_be_retried_later() -> None:
    last = a_job(JobStatus.PROCESSING, attempts=3, max_attempts=3)
    with pytest.raises(InvalidState, match="attempt 3 of 3 was the last"):
        last.retry_later(AT, "boom", NEXT_ATTEMPT_MS)
    assert last.fail(AT, "boom").status == JobStatus.FAILED


def test_failing_is_final_and_keeps_the_error() -> None:
    failed = a_job(JobStatus.PROCESSING, lease_until_ms=LEASE_MS).fail(AT, "bad payload", PROGRESS)
    assert failed.status.is_final
    assert (failed.error, failed.completed_at, failed.lease_until_ms, failed.progress) == (
        "bad payload",
        AT,
        None,
        PROGRESS,
    )
    assert failed.history[-1] == HistoryEntry(status=JobStatus.FAILED, at=AT, attempt=1, error="bad payload")


def test_cancelling_ends_the_wait() -> None:
    job = a_job(JobStatus.RETRYING, next_attempt_at_ms=NEXT_ATTEMPT_MS, sweep_at=AT)
    cancelled = job.cancel(AT)
    assert (cancelled.completed_at, cancelled.next_attempt_at_ms, cancelled.sweep_at) == (AT, None, None)
    assert cancelled.history[-1] == HistoryEntry(status=JobStatus.CANCELLED, at=AT)


def test_resetting_starts_over_and_rearms_the_callback() -> None:
    # Given a failed job whose failure was reported to its callback
    reported = Callback(url="https://example.com/cb", status=CallbackStatus.DELIVERED, attempts=1, for_version=4)
    job = a_job(
        JobStatus.FAILED,
        attempts=3,
        error="boom",
        result={"partial": True},
        started_at=CREATED,
        completed_at=CREATED,
        run_at=CREATED,
        callback=reported,
    )
    # When it is reset
    again = job.reset(AT, sweep_at="2026-01-01T00:03:00.000Z")
    # Then it is pending from its first attempt, its old outcome is gone, and its callback waits for the next one
    assert (again.status, again.attempts, again.sweep_at) == (JobStatus.PENDING, 0, "2026-01-01T00:03:00.000Z")
    assert (again.error, again.result, again.started_at, again.completed_at, again.run_at) == (None,) * 5
    assert again.callback == Callback(url="https://example.com/cb")
    assert a_job(JobStatus.CANCELLED).reset(AT, sweep_at=AT).callback is None


def test_a_waiting_job_is_released_to_pending_and_only_a_waiting_one() -> None:
    # Given a job waiting for its dependencies
    job = a_job(JobStatus.WAITING, attempts=0, depends_on=("a", "b"), waiting_on=0)
    # When it is released, it is pending with a sweep mark and nothing left to wait for
    released = job.release(AT, sweep_at=AT)
    assert (released.status, released.waiting_on, released.sweep_at) == (JobStatus.PENDING, 0, AT)
    assert released.depends_on == ("a", "b")
    # and neither a pending job nor a retry of a waiting job goes through that door
    with pytest.raises(InvalidState, match="only waiting jobs are released, this one is pending"):
        released.release(AT, sweep_at=AT)
    with pytest.raises(InvalidState, match="only failed or cancelled jobs can be retried, this one is waiting"):
        job.reset(AT, sweep_at=AT)


def test_a_cancel_may_say_why_and_the_record_shows_dependencies() -> None:
    job = a_job(JobStatus.WAITING, attempts=0, depends_on=("a",), waiting_on=1)
    assert job.to_api()["dependsOn"] == ["a"] and job.to_api()["waitingOn"] == 1
    cancelled = job.cancel(AT, "dependency a failed")
    assert (cancelled.error, cancelled.history[-1].error) == ("dependency a failed", "dependency a failed")
    # A job without dependencies shows neither field
    assert not {"dependsOn", "waitingOn"} & set(a_job(JobStatus.PENDING).to_api())
