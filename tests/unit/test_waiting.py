"""Long-poll reads: return when the job is final, or when the wait runs out; reads spaced out, not every 100 ms."""

from __future__ import annotations

import pytest

from functions.logic.waiting import parse_wait, wait_for_final
from functions.models.errors import InvalidQuery, NotFound
from functions.models.job import JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, make_job


class Timeline:
    """monotonic() and sleep() on a virtual clock; ``at`` runs a callback once the time passes a mark."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events: list[tuple[float, object]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for mark, action in list(self.events):
            if self.now >= mark:
                self.events.remove((mark, action))
                action()  # type: ignore[operator]


def test_returns_as_soon_as_the_job_is_final(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a processing job that completes 2.5 s into the wait
    job = make_job(clock, status=JobStatus.PROCESSING)
    repo.create(job)
    timeline = Timeline()
    timeline.events.append((2.5, lambda: repo.save(job, job.model_copy(update={"status": JobStatus.COMPLETED}))))

    # When a client waits up to 20 s
    final, reads = wait_for_final(repo, job.tenant, job.id, 20, monotonic=timeline.monotonic, sleep=timeline.sleep)

    # Then it gets the completed job within a second of completion, after a handful of reads
    assert final.status == JobStatus.COMPLETED
    assert 2.5 <= timeline.now < 3.5
    assert reads <= 8


def test_a_long_wait_reads_about_once_a_second(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = make_job(clock, status=JobStatus.PENDING)
    repo.create(job)
    timeline = Timeline()

    still, reads = wait_for_final(repo, job.tenant, job.id, 20, monotonic=timeline.monotonic, sleep=timeline.sleep)

    assert still.status == JobStatus.PENDING
    assert timeline.now == pytest.approx(20)
    assert reads <= 26  # a read per 100 ms would be 200


def test_no_wait_reads_once(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = make_job(clock)
    repo.create(job)
    timeline = Timeline()
    _, reads = wait_for_final(repo, job.tenant, job.id, 0, monotonic=timeline.monotonic, sleep=timeline.sleep)
    assert reads == 1 and timeline.now == 0


def test_unknown_job_is_not_found(repo: InMemoryJobsRepository) -> None:
    with pytest.raises(NotFound):
        wait_for_final(repo, "t", "nope", 5)


@pytest.mark.parametrize("raw", ["21", "-1", "1.5", "x", "²", "99999999999999999999"])
def test_wait_must_be_0_to_20_seconds(raw: str) -> None:
    with pytest.raises(InvalidQuery, match=r"^'wait' must be an integer from 0 to 20 \(seconds\)$"):
        parse_wait({"wait": raw})


def test_wait_parses() -> None:
    assert parse_wait({}) == 0 and parse_wait({"wait": "20"}) == 20 and parse_wait({"wait": ""}) == 0
