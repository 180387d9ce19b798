"""Progress: a job reports 0-100 and a message; writes are throttled; the last value lands with the outcome."""

from __future__ import annotations

from typing import Any

import pytest

from functions.logic.consume import ConsumerSettings, MessageConsumer, Outcome
from functions.logic.job_types import JobContext
from functions.logic.progress import ProgressReporter
from functions.models.job import JobStatus
from functions.settings import Settings
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, RegisterJobType, make_job, message_body

SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-queue"


def _consumer(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> MessageConsumer:
    return MessageConsumer(
        repo=repo,
        queue=queue,
        clock=clock,
        settings=ConsumerSettings(1, 4),
        job_settings=Settings(progress_interval_seconds=2.0),
    )


def test_reports_are_throttled_and_the_last_one_lands_with_the_outcome(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    # Given a job type that reports ten steps, 0.5 s apart
    seen_mid_run: list[Any] = []

    def steps(payload: Any, ctx: JobContext) -> str:
        for step in range(1, 11):
            ctx.report_progress(step * 10, f"step {step} of 10")
            clock.advance(seconds=0.5)
            if step == 5:
                seen_mid_run.append(repo.get(ctx.tenant, ctx.job_id))
        return "done"

    job = make_job(clock, job_type=register_job_type("steps", steps), payload={})
    repo.create(job)

    # When it runs
    outcome = _consumer(repo, queue, clock).handle(message_body(job), SOURCE_ARN, "r", 30_000)

    # Then mid-run the record showed an earlier report, written without a version change
    assert outcome == Outcome.COMPLETED
    mid = seen_mid_run[0]
    assert mid.status == JobStatus.PROCESSING and mid.progress is not None and mid.progress.percent == 50
    # And ten reports over 5 s cost 3 writes (at 0, 2 and 4 s), not ten
    assert repo.progress_writes == 3
    # And the final record carries the last report
    final = repo.get(job.tenant, job.id)
    assert final is not None and final.status == JobStatus.COMPLETED
    assert final.progress is not None and (final.progress.percent, final.progress.message) == (100, "step 10 of 10")
    assert final.to_api()["progress"]["message"] == "step 10 of 10"


def test_a_failed_attempt_keeps_its_progress(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, register_job_type: RegisterJobType
) -> None:
    def half_then_fail(payload: Any, ctx: JobContext) -> str:
        ctx.report_progress(50, "halfway")
        raise RuntimeError("boom")

    job = make_job(clock, job_type=register_job_type("half", half_then_fail), payload={}, max_attempts=1)
    repo.create(job)
    _consumer(repo, queue, clock).handle(message_body(job), SOURCE_ARN, "r", 30_000)

    final = repo.get(job.tenant, job.id)
    assert final is not None and final.status == JobStatus.FAILED
    assert final.progress is not None and final.progress.message == "halfway"


def test_a_write_is_dropped_once_the_attempt_lost_its_job(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a running job that another delivery has since taken over (the version moved)
    job = make_job(clock, status=JobStatus.PROCESSING)
    repo.create(job)
    repo.touch(job.tenant, job.id)
    reporter = ProgressReporter(repo, job, clock, 0)

    # When the stale attempt reports
    reporter(30, "late")

    # Then nothing is written to the record
    stored = repo.get(job.tenant, job.id)
    assert stored is not None and stored.progress is None and reporter.writes == 0


@pytest.mark.parametrize("percent", [-1, 101, float("nan"), True, "50"])
def test_progress_must_be_0_to_100(repo: InMemoryJobsRepository, clock: FakeClock, percent: Any) -> None:
    reporter = ProgressReporter(repo, make_job(clock), clock, 0)
    with pytest.raises(ValueError, match="progress"):
        reporter(percent)


def test_long_messages_are_cut(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    reporter = ProgressReporter(repo, make_job(clock), clock, 60)
    reporter(1, "x" * 500)
    assert reporter.latest is not None and len(reporter.latest.message) == 200
