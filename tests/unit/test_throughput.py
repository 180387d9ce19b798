"""Per-minute completions and failures for the dashboard's throughput chart."""

from __future__ import annotations

import itertools

import pytest

from functions.logic import manage
from functions.logic.clock import iso
from functions.models.errors import InvalidQuery
from functions.models.job import JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, make_job

_ids = itertools.count(1)
TENANT = "tenant-a"

NOW = 1_795_000_000_000 - 1_795_000_000_000 % 60_000 + 30_000  # half a minute past a minute boundary


def finish(repo: InMemoryJobsRepository, status: JobStatus, at_ms: int) -> None:
    job = make_job(FakeClock(at_ms), job_id=f"00000000-0000-4000-8000-{next(_ids):012d}", status=JobStatus.PROCESSING)
    repo.create(job)
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    repo.save(stored, stored.model_copy(update={"status": status, "updated_at": iso(at_ms)}))


def test_buckets_cover_the_window_oldest_first_and_count_per_minute() -> None:
    # Given two completions this minute, one failure two minutes ago, and a completion outside the window
    repo = InMemoryJobsRepository()
    finish(repo, JobStatus.COMPLETED, NOW)
    finish(repo, JobStatus.COMPLETED, NOW - 20_000)
    finish(repo, JobStatus.FAILED, NOW - 120_000)
    finish(repo, JobStatus.COMPLETED, NOW - 10 * 60_000)
    # When
    answer = manage.throughput(repo, TENANT, {"minutes": "5"}, NOW)
    # Then
    buckets = answer["buckets"]
    assert answer["minutes"] == 5 and len(buckets) == 5
    assert [b["minute"] for b in buckets] == sorted(b["minute"] for b in buckets)
    assert buckets[-1] == {"minute": iso(NOW - 30_000)[:16] + "Z", "completed": 2, "failed": 0}
    assert buckets[-3]["failed"] == 1 and buckets[-3]["completed"] == 0
    assert sum(b["completed"] for b in buckets) == 2


def test_cancellations_and_retries_are_not_throughput() -> None:
    repo = InMemoryJobsRepository()
    finish(repo, JobStatus.CANCELLED, NOW)
    finish(repo, JobStatus.RETRYING, NOW)
    buckets = manage.throughput(repo, TENANT, {}, NOW)["buckets"]
    assert len(buckets) == 60
    assert all(b["completed"] == 0 and b["failed"] == 0 for b in buckets)


@pytest.mark.parametrize("minutes", ["0", "1441", "abc", "²", "-5"])
def test_a_bad_window_is_invalid_query(minutes: str) -> None:
    with pytest.raises(InvalidQuery):
        manage.throughput(InMemoryJobsRepository(), "t", {"minutes": minutes}, NOW)


def test_only_minutes_that_ended_over_a_minute_ago_count_as_settled() -> None:
    # Given the time half a minute into a minute
    repo = InMemoryJobsRepository()
    # When the chart is read
    buckets = manage.throughput(repo, TENANT, {"minutes": "5"}, NOW)["buckets"]
    # Then the repository may summarize the three oldest minutes, not the previous one nor the current one
    settled = [b["minute"] for b in buckets if repo.settled_before and b["minute"] < repo.settled_before]
    assert settled == [b["minute"] for b in buckets[:3]]
