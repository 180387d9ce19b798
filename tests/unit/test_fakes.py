"""The fakes honour the DAL contracts the other unit tests rely on (so a green suite means something)."""

from __future__ import annotations

import pytest

from functions.dal.jobs_repository import InvalidCursor, sweep_shard
from functions.models.errors import ConcurrentUpdate, StorageError
from functions.models.job import JobMessage, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, make_job


def test_create_refuses_an_existing_job(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    repo.create(make_job(clock))
    with pytest.raises(ConcurrentUpdate):
        repo.create(make_job(clock))
    assert repo.counters("tenant-a")["enqueued"] == 1


def test_save_bumps_the_version_and_refuses_a_stale_before(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a stored job read twice
    job = make_job(clock)
    repo.create(job)
    first_read = second_read = repo.get("tenant-a", job.id)
    assert first_read is not None and second_read is not None
    # When the first reader saves, then the stored version is bumped
    repo.save(first_read, first_read.model_copy(update={"priority": 9}))
    stored = repo.get("tenant-a", job.id)
    assert stored is not None
    assert (stored.version, stored.priority) == (1, 9)
    # And the second reader's save, based on version 0, is refused and changes nothing
    with pytest.raises(ConcurrentUpdate):
        repo.save(second_read, second_read.model_copy(update={"priority": 1}))
    assert repo.get("tenant-a", job.id) == stored


def test_save_of_a_missing_job_is_a_concurrent_update(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    with pytest.raises(ConcurrentUpdate):
        repo.save(make_job(clock), make_job(clock))


def test_counters_move_only_on_status_change(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = make_job(clock)
    repo.create(job)
    repo.save(job, job.model_copy(update={"priority": 2}))
    stored = repo.get("tenant-a", job.id)
    assert stored is not None
    repo.save(stored, stored.model_copy(update={"status": JobStatus.PROCESSING}))
    counters = repo.counters("tenant-a")
    assert (counters["enqueued"], counters["pending"], counters["processing"]) == (1, 0, 1)
    assert set(counters) == {"enqueued", *(status.value for status in JobStatus)}


def test_list_page_is_newest_first_per_tenant_and_checks_its_cursor(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    for n in range(3):
        repo.create(make_job(clock, job_id=f"job-{n}", job_type="simulate" if n % 2 else "message"))
        clock.advance(1)
    repo.create(make_job(clock, job_id="other", tenant="tenant-b"))
    page = repo.list_page("tenant-a", None, None, 2, None)
    assert [job.id for job in page.jobs] == ["job-2", "job-1"]
    assert page.next_cursor is not None
    assert [job.id for job in repo.list_page("tenant-a", None, "message", 10, None).jobs] == ["job-2", "job-0"]
    with pytest.raises(InvalidCursor):
        repo.list_page("tenant-b", None, None, 2, page.next_cursor)
    with pytest.raises(InvalidCursor):
        repo.list_page("tenant-a", None, None, 2, "garbage")


def test_due_for_sweep_reads_one_shard_up_to_a_time_oldest_mark_first(clock: FakeClock) -> None:
    repo = InMemoryJobsRepository(sweep_shards=2)
    jobs = [make_job(clock, job_id=f"job-{n}", sweep_at=clock.iso(n)) for n in range(10)]
    for job in jobs:
        repo.create(job)
    repo.create(make_job(clock, job_id="unmarked"))
    due = repo.due_for_sweep(0, clock.iso(5), 100)
    expected = [job.id for job in jobs[:6] if sweep_shard(job.id, 2) == "0"]
    assert [job.id for job in due] == expected
    assert len(repo.due_for_sweep(0, clock.iso(100), 1)) == 1


def test_recording_queue_records_and_can_fail_sends() -> None:
    queue = RecordingQueue()
    queue.send(JobMessage(tenant="t", jobId="j"), delay_seconds=5)
    queue.defer("arn", "rh", 3)
    queue.dead_letter("body", "why")
    assert (queue.sent_job_ids(), queue.sends[0].delay_seconds) == (["j"], 5)
    assert (len(queue.defers), len(queue.dead_letters)) == (1, 1)
    queue.fail_sends = True
    with pytest.raises(StorageError):
        queue.send(JobMessage(tenant="t", jobId="k"))
    assert queue.sent_job_ids() == ["j"]


def test_fake_clock_advances() -> None:
    clock = FakeClock(1000)
    assert clock() == 1000
    clock.advance(1.5)
    clock.advance(ms=5)
    assert clock() == 2505
