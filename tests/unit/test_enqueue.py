"""enqueue: the record is written first with a sweep mark, then the message is sent (or left to the sweeper)."""

from __future__ import annotations

import uuid

from functions.logic.enqueue import EnqueueSettings, JobSpec, submit
from functions.models.job import HistoryEntry, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue

SETTINGS = EnqueueSettings(pending_grace_seconds=120, release_ahead_seconds=900)
SPEC = JobSpec(type="message", payload={"message": "hi"})


def _spec(clock: FakeClock, delay_seconds: int = 0, priority: int = 5, max_attempts: int = 3) -> JobSpec:
    run_at_ms = clock() + delay_seconds * 1000 if delay_seconds else None
    return JobSpec(
        type="message", payload={"message": "hi"}, priority=priority, max_attempts=max_attempts, run_at_ms=run_at_ms
    )


def test_a_job_to_run_now_is_pending_marked_for_the_sweeper_and_sent_without_delay(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a spec without delay
    # When it is enqueued for tenant-a
    job = submit(_spec(clock, priority=8, max_attempts=4), "tenant-a", repo, queue, clock, SETTINGS).job
    # Then the stored record is pending, with one history entry and the request's options
    stored = repo.get("tenant-a", job.id)
    assert stored == job
    assert uuid.UUID(job.id).version == 4
    assert job.status == JobStatus.PENDING
    assert (job.priority, job.max_attempts, job.attempts) == (8, 4, 0)
    assert job.history == (HistoryEntry(status=JobStatus.PENDING, at=clock.iso()),)
    assert job.created_at == job.updated_at == clock.iso()
    assert job.run_at is None
    # And the sweeper will re-send it if the consumer has not picked it up within the grace period
    assert job.sweep_at == clock.iso(SETTINGS.pending_grace_seconds)
    # And its message went out at once, naming the type (the consumer claims it without reading the record)
    assert [(sent.message.tenant, sent.message.job_id, sent.delay_seconds) for sent in queue.sends] == [
        ("tenant-a", job.id, 0)
    ]
    assert queue.sends[0].message.type == job.type


def test_enqueue_counts_the_job_as_enqueued_and_pending(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    submit(_spec(clock), "tenant-a", repo, queue, clock, SETTINGS)
    submit(_spec(clock, delay_seconds=60), "tenant-a", repo, queue, clock, SETTINGS)
    counters = repo.counters("tenant-a")
    assert (counters["enqueued"], counters["pending"], counters["scheduled"]) == (2, 1, 1)
    assert repo.counters("tenant-b")["enqueued"] == 0


def test_a_short_delay_is_scheduled_and_sent_with_sqs_delay_seconds(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given delaySeconds 60
    # When the job is enqueued
    job = submit(_spec(clock, delay_seconds=60), "tenant-a", repo, queue, clock, SETTINGS).job
    # Then it is scheduled for now+60 s, with a scheduled history entry
    assert job.status == JobStatus.SCHEDULED
    assert job.run_at == clock.iso(60)
    assert job.history == (HistoryEntry(status=JobStatus.SCHEDULED, at=clock.iso()),)
    # And SQS holds the message for 60 s, without the type: a scheduled job is read, not claimed unread (that
    # claim's condition would fail, costing a write unit)
    assert [(sent.message.job_id, sent.delay_seconds, sent.message.type) for sent in queue.sends] == [
        (job.id, 60, None)
    ]
    # And the sweeper only looks again if it has not run by runAt + grace
    assert job.sweep_at == clock.iso(60 + SETTINGS.pending_grace_seconds)


def test_a_delay_of_exactly_the_sqs_maximum_is_still_sent(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    job = submit(_spec(clock, delay_seconds=900), "tenant-a", repo, queue, clock, SETTINGS).job
    assert [(sent.message.job_id, sent.delay_seconds) for sent in queue.sends] == [(job.id, 900)]


def test_a_long_delay_is_scheduled_not_sent_and_marked_for_release_ahead_of_run_at(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given delaySeconds 3600, beyond SQS's 900 s
    # When the job is enqueued
    job = submit(_spec(clock, delay_seconds=3600), "tenant-a", repo, queue, clock, SETTINGS).job
    # Then it is scheduled and stored, but no message is sent yet
    assert job.status == JobStatus.SCHEDULED
    assert job.run_at == clock.iso(3600)
    assert repo.get("tenant-a", job.id) == job
    assert queue.sends == []
    # And the sweeper releases it release_ahead seconds before runAt
    assert job.sweep_at == clock.iso(3600 - SETTINGS.release_ahead_seconds)


def test_a_failed_send_still_returns_and_stores_the_job_for_the_sweeper(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given SQS failing every send
    queue = RecordingQueue(fail_sends=True)
    # When a job is enqueued
    job = submit(_spec(clock), "tenant-a", repo, queue, clock, SETTINGS).job
    # Then the send was attempted, the caller still gets the job (202), and the record carries its sweep mark
    assert queue.failed_sends == 1
    assert queue.sends == []
    stored = repo.get("tenant-a", job.id)
    assert stored is not None
    assert stored.status == JobStatus.PENDING
    assert stored.sweep_at == clock.iso(SETTINGS.pending_grace_seconds)


def test_every_enqueue_gets_a_fresh_id(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    ids = {submit(SPEC, "tenant-a", repo, queue, clock, SETTINGS).job.id for _ in range(20)}
    assert len(ids) == 20
    assert len(repo.all_jobs()) == 20
