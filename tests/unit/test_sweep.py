"""sweep: releases due scheduled jobs, re-sends stale pending ones, clears stale marks, leaves the rest alone."""

from __future__ import annotations

import pytest

from functions.logic import sweep as sweep_module
from functions.logic.enqueue import EnqueueSettings, JobSpec, submit
from functions.logic.sweep import SweepReport, SweepSettings, sweep
from functions.models.job import Callback, CallbackStatus, Job, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, make_job

GRACE = 120
RELEASE_AHEAD = 900
SETTINGS = SweepSettings(sweep_shards=4, pending_grace_seconds=GRACE, release_ahead_seconds=RELEASE_AHEAD)
ENQUEUE = EnqueueSettings(pending_grace_seconds=GRACE, release_ahead_seconds=RELEASE_AHEAD)
SPEC = JobSpec(type="message", payload={"message": "hi"})


def _reload(repo: InMemoryJobsRepository, job: Job) -> Job:
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


def _job_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_a_scheduled_job_coming_due_is_sent_with_its_remaining_delay(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job scheduled an hour ahead (too far for SQS, so nothing was sent)
    spec = JobSpec(type="message", payload={"message": "hi"}, run_at_ms=clock() + 3_600_000)
    job = submit(spec, "t", repo, queue, clock, ENQUEUE).job
    assert queue.sends == []
    # When the sweeper runs 100 s after its release mark (runAt - 900 s)
    clock.advance(3600 - RELEASE_AHEAD + 100)
    report = sweep(repo, queue, clock, SETTINGS)
    # Then its message goes out delayed by the 800 s left until runAt
    assert [(sent.message.job_id, sent.delay_seconds) for sent in queue.sends] == [(job.id, 800)]
    assert report == SweepReport(released=1, resent=0, skipped=0)
    # And the sweeper looks again only if the job has not run by runAt + grace
    released = _reload(repo, job)
    assert released.sweep_at == clock.iso(800 + GRACE)
    assert released.status == JobStatus.SCHEDULED


def test_a_scheduled_delay_is_rounded_up_to_whole_seconds(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a scheduled job due in 10.2 s whose mark has passed
    job = make_job(clock, status=JobStatus.SCHEDULED, run_at=clock.iso(10.2), sweep_at=clock.iso())
    repo.create(job)
    # When the sweeper runs, then it never releases early: 11 s
    sweep(repo, queue, clock, SETTINGS)
    assert [sent.delay_seconds for sent in queue.sends] == [11]


def test_a_pending_job_past_its_grace_is_resent_and_its_mark_moved(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given a pending job whose first send failed (the dual-write gap)
    queue = RecordingQueue(fail_sends=True)
    job = submit(SPEC, "t", repo, queue, clock, ENQUEUE).job
    queue.fail_sends = False
    # When the sweeper runs once the grace period has passed
    clock.advance(GRACE)
    report = sweep(repo, queue, clock, SETTINGS)
    # Then the message is sent, without delay, and the next look is a grace period later
    assert [(sent.message.job_id, sent.delay_seconds) for sent in queue.sends] == [(job.id, 0)]
    assert report.resent == 1
    assert _reload(repo, job).sweep_at == clock.iso(GRACE)
    # And a second run right after does not send it again
    sweep(repo, queue, clock, SETTINGS)
    assert len(queue.sends) == 1


def test_a_resend_that_fails_again_is_retried_on_a_later_sweep(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a pending job and SQS still failing at the first sweep
    queue = RecordingQueue(fail_sends=True)
    job = submit(SPEC, "t", repo, queue, clock, ENQUEUE).job
    clock.advance(GRACE)
    sweep(repo, queue, clock, SETTINGS)
    assert queue.sends == []
    # When SQS recovers and the next grace period passes
    queue.fail_sends = False
    clock.advance(GRACE)
    sweep(repo, queue, clock, SETTINGS)
    # Then the job's message is finally sent
    assert queue.sent_job_ids() == [job.id]


# (An in-flight job's due mark is not stale: it means its message is gone; see test_reconcile.py.)
@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_stale_mark_on_a_job_that_moved_on_is_cleared_without_sending(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, status: JobStatus
) -> None:
    # Given a job that is no longer waiting but still carries a passed sweep mark
    job = make_job(clock, status=status, attempts=1, sweep_at=clock.iso(-1))
    repo.create(job)
    # When the sweeper runs
    report = sweep(repo, queue, clock, SETTINGS)
    # Then nothing is sent, the mark is gone, and the job is otherwise unchanged
    assert queue.sends == []
    assert report.skipped >= 1
    swept = _reload(repo, job)
    assert swept.sweep_at is None
    assert swept.status == status
    assert swept.model_copy(update={"version": 0, "sweep_at": job.sweep_at}) == job


def test_jobs_not_yet_due_are_untouched(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    # Given a pending job within its grace, a short scheduled job and a long scheduled job
    pending = submit(SPEC, "t", repo, queue, clock, ENQUEUE).job
    soon = submit(
        JobSpec(type="message", payload={"message": "a"}, run_at_ms=clock() + 60_000), "t", repo, queue, clock, ENQUEUE
    ).job
    later = submit(
        JobSpec(type="message", payload={"message": "b"}, run_at_ms=clock() + 7_200_000),
        "t",
        repo,
        queue,
        clock,
        ENQUEUE,
    ).job
    sends, writes = len(queue.sends), repo.writes
    # When the sweeper runs a second before the earliest mark
    clock.advance(GRACE - 1)
    report = sweep(repo, queue, clock, SETTINGS)
    # Then nothing is sent or written
    assert report == SweepReport()
    assert (len(queue.sends), repo.writes) == (sends, writes)
    assert [_reload(repo, job).sweep_at for job in (pending, soon, later)] == [
        job.sweep_at for job in (pending, soon, later)
    ]


def test_the_sweeper_visits_every_shard(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    # Given 40 pending jobs spread over the 4 shards, all past their grace
    failing = RecordingQueue(fail_sends=True)
    jobs = [submit(SPEC, "t", repo, failing, clock, ENQUEUE).job for _ in range(40)]
    clock.advance(GRACE)
    # When the sweeper runs
    sweep(repo, queue, clock, SETTINGS)
    # Then every job's message is sent exactly once
    assert sorted(queue.sent_job_ids()) == sorted(job.id for job in jobs)


def test_the_sweeper_pages_through_more_due_jobs_than_one_page(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pages of 3 and 10 stale pending jobs in a single shard
    monkeypatch.setattr(sweep_module, "PAGE_SIZE", 3)
    single = SweepSettings(sweep_shards=1, pending_grace_seconds=GRACE, release_ahead_seconds=RELEASE_AHEAD)
    repo.sweep_shards = 1
    jobs = [make_job(clock, job_id=_job_id(n), sweep_at=clock.iso(-n)) for n in range(10)]
    for job in jobs:
        repo.create(job)
    # When the sweeper runs
    sweep(repo, queue, clock, single)
    # Then all ten are re-sent, each once
    assert sorted(queue.sent_job_ids()) == sorted(job.id for job in jobs)


def test_an_overdue_scheduled_job_is_sent_once_per_grace_period(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 5 scheduled jobs whose runAt passed long ago (their message was lost or the sweeper was down),
    # in a single shard read 2 at a time
    monkeypatch.setattr(sweep_module, "PAGE_SIZE", 2)
    single = SweepSettings(sweep_shards=1, pending_grace_seconds=GRACE, release_ahead_seconds=RELEASE_AHEAD)
    repo.sweep_shards = 1
    jobs = [
        make_job(
            clock,
            job_id=_job_id(n),
            status=JobStatus.SCHEDULED,
            run_at=clock.iso(-3600 - n),
            sweep_at=clock.iso(-3600 - n + GRACE),
        )
        for n in range(5)
    ]
    for job in jobs:
        repo.create(job)
    # When the sweeper runs
    sweep(repo, queue, clock, single)
    # Then each job is sent exactly once, and its next look is in the future
    assert sorted(queue.sent_job_ids()) == sorted(job.id for job in jobs)
    assert all((_reload(repo, job).sweep_at or "") > clock.iso() for job in jobs)


def test_a_job_changed_between_read_and_mark_keeps_the_other_writers_version(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a stale pending job that the consumer claims while the sweeper handles it
    job = make_job(clock, sweep_at=clock.iso(-1))
    repo.create(job)

    def consumer_claims() -> None:
        current = _reload(repo, job)
        repo.save(current, current.model_copy(update={"status": JobStatus.PROCESSING, "sweep_at": None}))

    repo.before_next_save = consumer_claims
    # When the sweeper runs
    report = sweep(repo, queue, clock, SETTINGS)
    # Then its mark write loses (no error), and the consumer's record stands; the extra message is harmless
    assert report.skipped >= 1
    current = _reload(repo, job)
    assert (current.status, current.sweep_at) == (JobStatus.PROCESSING, None)


# --- completion callbacks ---


def _final_with_callback(
    repo: InMemoryJobsRepository, clock: FakeClock, callback_status: CallbackStatus, sweep_at: str
) -> Job:
    callback = Callback(url="https://hooks.example.com/", status=callback_status, attempts=1, for_version=0)
    job = make_job(clock, status=JobStatus.COMPLETED, attempts=1, callback=callback, sweep_at=sweep_at)
    repo.create(job)
    return job


def test_a_pending_callback_past_its_mark_is_sent_again_and_its_mark_moved(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a completed job whose callback message was lost (pending, its mark passed)
    job = _final_with_callback(repo, clock, CallbackStatus.PENDING, clock.iso(-1))
    # When the sweeper runs
    report = sweep(repo, queue, clock, SETTINGS)
    # Then a callback message (not a run message) goes out, and the next look is a grace period later
    assert [(sent.message.job_id, sent.message.kind) for sent in queue.sends] == [(job.id, "callback")]
    assert report == SweepReport(callbacks_resent=1)
    swept = _reload(repo, job)
    assert swept.sweep_at == clock.iso(GRACE)
    assert swept.callback == job.callback and swept.status == JobStatus.COMPLETED
    # And a second run right after sends nothing more
    sweep(repo, queue, clock, SETTINGS)
    assert len(queue.sends) == 1


def test_a_callback_resend_that_fails_is_tried_again_a_grace_later(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given a lost callback and SQS down at the first sweep
    job = _final_with_callback(repo, clock, CallbackStatus.PENDING, clock.iso(-1))
    queue = RecordingQueue(fail_sends=True)
    sweep(repo, queue, clock, SETTINGS)
    assert queue.failed_sends == 1
    # When SQS is back and a grace period has passed
    queue.fail_sends = False
    clock.advance(GRACE)
    sweep(repo, queue, clock, SETTINGS)
    # Then the callback message is sent
    assert [sent.message.kind for sent in queue.sends] == ["callback"]
    assert _reload(repo, job).sweep_at == clock.iso(GRACE)


@pytest.mark.parametrize("callback_status", [CallbackStatus.DELIVERED, CallbackStatus.FAILED])
def test_a_stale_mark_on_a_settled_callback_is_cleared_without_sending(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, callback_status: CallbackStatus
) -> None:
    job = _final_with_callback(repo, clock, callback_status, clock.iso(-1))
    report = sweep(repo, queue, clock, SETTINGS)
    assert queue.sends == []
    assert report.callbacks_resent == 0 and report.skipped == 1
    assert _reload(repo, job).sweep_at is None


def test_a_pending_callback_before_its_mark_is_untouched(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a callback waiting for a retry whose mark is a second away
    job = _final_with_callback(repo, clock, CallbackStatus.PENDING, clock.iso(1))
    writes = repo.writes
    # When the sweeper runs, then nothing is sent or written
    assert sweep(repo, queue, clock, SETTINGS) == SweepReport()
    assert (queue.sends, repo.writes) == ([], writes)
    assert _reload(repo, job) == job


def test_re_sends_of_a_job_waiting_in_a_backlog_thin_out(clock: FakeClock) -> None:
    # Given a pending job whose message is simply waiting behind a long backlog (grace 120 s)
    repo, queue = InMemoryJobsRepository(sweep_shards=1), RecordingQueue()
    settings = SweepSettings(sweep_shards=1, pending_grace_seconds=120, release_ahead_seconds=120)
    job = make_job(clock, status=JobStatus.PENDING, sweep_at=clock.iso(120))
    repo.create(job)

    # When the sweeper runs every minute for an hour
    for _ in range(60):
        clock.advance(seconds=60)
        sweep(repo, queue, clock, settings)

    # Then the job was re-sent at about 2, 4, 8, 16 and 32 minutes: 5 times, not 29
    assert len(queue.sends) == 5
