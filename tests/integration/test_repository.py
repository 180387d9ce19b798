"""DynamoJobsRepository against moto: round trips, conditional writes, exact counters, listing and the sweep index."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from functions.dal.jobs_repository import DynamoJobsRepository, InvalidCursor, sweep_shard
from functions.handlers.runtime import runtime
from functions.logic.clock import iso, system_clock
from functions.models.errors import ConcurrentUpdate
from functions.models.job import HistoryEntry, Job, JobStatus
from local.aws import serialize_dynamodb
from tests.integration.harness import TENANT_A, TENANT_B, Service, make_job

BASE_MS = 1_800_000_000_000  # a fixed instant, so creation order is explicit


def transition(job: Job, status: JobStatus, at_ms: int, **changes: Any) -> Job:
    at = iso(at_ms)
    entry = HistoryEntry(status=status, at=at, attempt=changes.get("attempts"))
    return job.model_copy(update={"status": status, "updated_at": at, "history": (*job.history, entry), **changes})


def saved(before: Job, after: Job) -> Job:
    """What the store holds after a successful save: ``after`` with the next version."""
    return after.model_copy(update={"version": before.version + 1})


def status_counts(counters: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in counters.items() if name != "enqueued" and value}


@pytest.fixture
def repo(service: Service) -> DynamoJobsRepository:
    return runtime().repo


def create_many(repo: DynamoJobsRepository, count: int, tenant: str = TENANT_A, **kwargs: Any) -> list[Job]:
    jobs = [make_job(tenant, created_ms=BASE_MS + i * 1000, **kwargs) for i in range(count)]
    for job in jobs:
        repo.create(job)
    return jobs


def list_all(
    repo: DynamoJobsRepository,
    tenant: str,
    limit: int,
    status: JobStatus | None = None,
    job_type: str | None = None,
) -> tuple[list[str], int]:
    """Follow nextCursor to the end; returns the ids in order and the number of pages read."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = repo.list_page(tenant, status, job_type, limit, cursor)
        pages += 1
        assert len(page.jobs) <= limit
        ids.extend(job.id for job in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            return ids, pages
        assert pages < 50, "pagination does not terminate"


# --- round trip and conditional writes ---


def test_a_created_job_reads_back_identical_with_its_counters(repo: DynamoJobsRepository) -> None:
    # Given a job with every optional field set
    job = make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS + 5000).model_copy(
        update={
            "run_at": iso(BASE_MS + 60_000),
            "started_at": iso(BASE_MS + 1),
            "completed_at": iso(BASE_MS + 2),
            "result": {"nested": [1, "two", None]},
            "error": "boom",
            "lease_until_ms": BASE_MS + 9,
            "next_attempt_at_ms": BASE_MS + 10,
            "history": (
                HistoryEntry(status=JobStatus.PENDING, at=iso(BASE_MS)),
                HistoryEntry(status=JobStatus.PROCESSING, at=iso(BASE_MS + 1), attempt=1, error=None),
                HistoryEntry(status=JobStatus.RETRYING, at=iso(BASE_MS + 2), attempt=1, error="boom"),
            ),
        }
    )

    # When it is created and read back
    repo.create(job)
    stored = repo.get(TENANT_A, job.id)

    # Then every field survives, and the counters know one pending job was enqueued
    assert stored == job
    assert repo.counters(TENANT_A)["enqueued"] == 1
    assert status_counts(repo.counters(TENANT_A)) == {"pending": 1}


def test_a_job_is_invisible_to_another_tenant_and_missing_ids_read_as_none(repo: DynamoJobsRepository) -> None:
    # Given a job of tenant A
    job = make_job(created_ms=BASE_MS)
    repo.create(job)

    # Then tenant B cannot read it, and an unknown id is simply absent
    assert repo.get(TENANT_B, job.id) is None
    assert repo.get(TENANT_A, "no-such-job") is None


def test_creating_the_same_job_twice_is_rejected_without_counting_it_again(repo: DynamoJobsRepository) -> None:
    # Given a created job
    job = make_job(created_ms=BASE_MS)
    repo.create(job)

    # When the very same record is created again (a retried request)
    # Then the conditional put refuses it and the counters still say one
    with pytest.raises(ConcurrentUpdate):
        repo.create(job)
    assert repo.counters(TENANT_A)["enqueued"] == 1
    assert status_counts(repo.counters(TENANT_A)) == {"pending": 1}


def test_saving_with_a_stale_version_raises_and_writes_nothing(repo: DynamoJobsRepository) -> None:
    # Given a job that has moved on to processing since a writer read it
    job = make_job(created_ms=BASE_MS)
    repo.create(job)
    processing = transition(job, JobStatus.PROCESSING, BASE_MS + 1, attempts=1)
    repo.save(job, processing)

    # When the writer holding the old version tries to cancel it
    cancelled = transition(job, JobStatus.CANCELLED, BASE_MS + 2)
    with pytest.raises(ConcurrentUpdate):
        repo.save(job, cancelled)

    # Then the record and the counters are exactly what the first save left
    assert repo.get(TENANT_A, job.id) == saved(job, processing)
    assert status_counts(repo.counters(TENANT_A)) == {"processing": 1}


def test_a_stale_save_without_a_status_change_is_also_rejected(repo: DynamoJobsRepository) -> None:
    # Given a job whose record was updated (same status, e.g. the sweeper moved its mark)
    job = make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS)
    repo.create(job)
    repo.save(job, job.model_copy(update={"sweep_at": iso(BASE_MS + 10_000)}))

    # When another writer saves from the old version (the single-item write path)
    with pytest.raises(ConcurrentUpdate):
        repo.save(job, job.model_copy(update={"sweep_at": None}))

    # Then the first write stands
    stored = repo.get(TENANT_A, job.id)
    assert stored is not None
    assert stored.sweep_at == iso(BASE_MS + 10_000)
    assert stored.version == 1


def test_each_status_change_moves_exactly_one_count(repo: DynamoJobsRepository) -> None:
    # Given three jobs
    first, second, third = create_many(repo, 3)

    # When one completes, one fails after a retry, one is cancelled
    p1 = transition(first, JobStatus.PROCESSING, BASE_MS + 10, attempts=1)
    repo.save(first, p1)
    repo.save(saved(first, p1), transition(p1, JobStatus.COMPLETED, BASE_MS + 11))
    p2 = transition(second, JobStatus.PROCESSING, BASE_MS + 10, attempts=1)
    repo.save(second, p2)
    r2 = transition(saved(second, p2), JobStatus.RETRYING, BASE_MS + 11)
    repo.save(saved(second, p2), r2)
    repo.save(saved(saved(second, p2), r2), transition(r2, JobStatus.FAILED, BASE_MS + 12))
    repo.save(third, transition(third, JobStatus.CANCELLED, BASE_MS + 10))

    # Then the counters are exact
    counters = repo.counters(TENANT_A)
    assert status_counts(counters) == {"completed": 1, "failed": 1, "cancelled": 1}
    assert counters["enqueued"] == 3
    assert status_counts(repo.counters(TENANT_B)) == {}


def test_counters_are_exact_under_concurrent_writers_and_only_one_racer_wins(repo: DynamoJobsRepository) -> None:
    # Given 8 jobs for 8 workers and one more job two racers both read at the same version
    jobs = create_many(repo, 9)
    contested = jobs[8]
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []
    racers_ready = threading.Barrier(2)

    def worker(job: Job) -> None:
        # read -> processing -> completed, each step from a fresh read, as the consumer does
        try:
            current = repo.get(TENANT_A, job.id)
            assert current is not None
            processing = transition(current, JobStatus.PROCESSING, system_clock(), attempts=1)
            repo.save(current, processing)
            current = repo.get(TENANT_A, job.id)
            assert current is not None
            repo.save(current, transition(current, JobStatus.COMPLETED, system_clock()))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def racer(name: str, status: JobStatus) -> None:
        try:
            current = repo.get(TENANT_A, contested.id)
            assert current is not None
            racers_ready.wait(5)
            try:
                repo.save(current, transition(current, status, system_clock(), attempts=1))
                outcomes[name] = "won"
            except ConcurrentUpdate:
                outcomes[name] = "lost"
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs[:8]]
    threads += [
        threading.Thread(target=racer, args=("consumer", JobStatus.PROCESSING)),
        threading.Thread(target=racer, args=("canceller", JobStatus.CANCELLED)),
    ]

    # When they all run at once (each DynamoDB request atomic, as on AWS and in the local stack)
    serialize_dynamodb()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then exactly one racer won, the record is the winner's, and the counts add up to the number of jobs
    assert not errors, errors
    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "won")
    expected_status = JobStatus.PROCESSING if winner == "consumer" else JobStatus.CANCELLED
    stored = repo.get(TENANT_A, contested.id)
    assert stored is not None
    assert stored.status == expected_status
    assert stored.version == 1
    counters = repo.counters(TENANT_A)
    assert status_counts(counters) == {"completed": 8, expected_status.value: 1}
    assert sum(status_counts(counters).values()) == len(jobs) == counters["enqueued"]


# --- listing ---


def test_listing_is_newest_first_and_pages_return_every_job_once(repo: DynamoJobsRepository) -> None:
    # Given 7 jobs created one second apart
    jobs = create_many(repo, 7)

    # When they are listed three at a time
    ids, pages = list_all(repo, TENANT_A, limit=3)

    # Then every job comes exactly once, newest first, over three pages
    assert ids == [job.id for job in reversed(jobs)]
    assert pages == 3


def test_the_first_page_says_whether_there_is_more(repo: DynamoJobsRepository) -> None:
    # Given 2 jobs
    create_many(repo, 2)

    # Then a page with room for both has no cursor, and a page of one has
    assert repo.list_page(TENANT_A, None, None, 5, None).next_cursor is None
    assert repo.list_page(TENANT_A, None, None, 1, None).next_cursor is not None


def _mixed_jobs(repo: DynamoJobsRepository) -> list[Job]:
    """12 jobs of tenant A: types alternate simulate/message, every third one cancelled; and noise from tenant B."""
    jobs: list[Job] = []
    for i in range(12):
        job = make_job(created_ms=BASE_MS + i * 1000, job_type="message" if i % 2 else "simulate")
        repo.create(job)
        if i % 3 == 0:
            cancelled = transition(job, JobStatus.CANCELLED, BASE_MS + i * 1000 + 1)
            repo.save(job, cancelled)
            job = saved(job, cancelled)
        jobs.append(job)
    for i in range(3):
        repo.create(make_job(TENANT_B, created_ms=BASE_MS + i * 1000, job_type="message"))
    return jobs


@pytest.mark.parametrize(
    ("status", "job_type"),
    [
        (JobStatus.CANCELLED, None),
        (JobStatus.PENDING, None),
        (None, "message"),
        (None, "simulate"),
        (JobStatus.PENDING, "message"),
        (JobStatus.CANCELLED, "simulate"),
        (JobStatus.COMPLETED, "simulate"),
    ],
)
def test_filters_return_exactly_the_matching_jobs_newest_first_at_any_page_size(
    repo: DynamoJobsRepository, status: JobStatus | None, job_type: str | None
) -> None:
    # Given a mix of types and statuses (and another tenant's jobs)
    jobs = _mixed_jobs(repo)
    expected = [
        job.id
        for job in reversed(jobs)
        if (status is None or job.status == status) and (job_type is None or job.type == job_type)
    ]

    for limit in (1, 2, 5, 100):
        # When the filtered listing is followed page by page
        ids, _ = list_all(repo, TENANT_A, limit, status, job_type)

        # Then it holds exactly the matching jobs, newest first, each once
        assert ids == expected, f"limit={limit}"


def test_a_both_filters_page_is_filled_to_the_limit_when_matches_remain(repo: DynamoJobsRepository) -> None:
    # Given jobs where pending message jobs are sparse among pending jobs
    jobs = _mixed_jobs(repo)
    matching = [job for job in jobs if job.status == JobStatus.PENDING and job.type == "message"]
    assert len(matching) >= 3

    # When asking for two of them
    page = repo.list_page(TENANT_A, JobStatus.PENDING, "message", 2, None)

    # Then the page is full (the repository reads on past filtered-out items) and more are announced
    assert [job.id for job in page.jobs] == [job.id for job in reversed(matching)][:2]
    assert page.next_cursor is not None


def test_a_cursor_only_works_for_the_tenant_and_listing_that_issued_it(repo: DynamoJobsRepository) -> None:
    # Given a cursor from tenant A's listing and one from A's status listing
    create_many(repo, 3)
    create_many(repo, 3, tenant=TENANT_B)
    cursor = repo.list_page(TENANT_A, None, None, 1, None).next_cursor
    status_cursor = repo.list_page(TENANT_A, JobStatus.PENDING, None, 1, None).next_cursor
    assert cursor and status_cursor

    # Then tenant B cannot use either, and A cannot use one listing's cursor for another
    with pytest.raises(InvalidCursor):
        repo.list_page(TENANT_B, None, None, 1, cursor)
    with pytest.raises(InvalidCursor):
        repo.list_page(TENANT_B, JobStatus.PENDING, None, 1, status_cursor)
    with pytest.raises(InvalidCursor):
        repo.list_page(TENANT_A, None, None, 1, status_cursor)
    with pytest.raises(InvalidCursor):
        repo.list_page(TENANT_A, JobStatus.CANCELLED, None, 1, status_cursor)
    # and A can
    assert len(repo.list_page(TENANT_A, None, None, 5, cursor).jobs) == 2


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "e30", "W10", "bnVsbA", '{"pk":"x"}'])
def test_a_garbage_cursor_is_an_invalid_cursor(repo: DynamoJobsRepository, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        repo.list_page(TENANT_A, None, None, 5, cursor)


# --- the sweep index ---


def test_due_for_sweep_returns_only_marked_jobs_of_that_shard_up_to_until(repo: DynamoJobsRepository) -> None:
    # Given marked jobs due at different times, spread over shards, and unmarked jobs
    shards = runtime().settings.sweep_shards
    marked = [make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS + i * 1000) for i in range(12)]
    unmarked = [make_job(created_ms=BASE_MS) for _ in range(4)]
    for job in marked + unmarked:
        repo.create(job)
    until_ms = BASE_MS + 6000

    for shard in range(shards):
        # When the sweeper asks one shard for what is due until `until`
        due = repo.due_for_sweep(shard, iso(until_ms), 100)

        # Then it gets exactly the marked jobs of that shard with sweepAt <= until
        expected = {
            job.id
            for job in marked
            if int(sweep_shard(job.id, shards)) == shard and job.sweep_at is not None and job.sweep_at <= iso(until_ms)
        }
        assert {job.id for job in due} == expected


def test_a_cleared_sweep_mark_takes_the_job_out_of_the_sweep_index(repo: DynamoJobsRepository) -> None:
    # Given a marked job
    job = make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS)
    repo.create(job)
    shard = int(sweep_shard(job.id, runtime().settings.sweep_shards))
    assert [j.id for j in repo.due_for_sweep(shard, iso(BASE_MS), 10)] == [job.id]

    # When its mark is cleared (the consumer claims it)
    repo.save(job, transition(job, JobStatus.PROCESSING, BASE_MS + 1, attempts=1, sweep_at=None))

    # Then the sweeper no longer sees it
    assert repo.due_for_sweep(shard, iso(BASE_MS + 10**9), 10) == []


def test_due_for_sweep_honours_its_limit(repo: DynamoJobsRepository) -> None:
    # Given 6 due jobs all in one shard
    shards = runtime().settings.sweep_shards
    jobs: list[Job] = []
    while len(jobs) < 6:
        job = make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS + len(jobs))
        if sweep_shard(job.id, shards) == "0":
            repo.create(job)
            jobs.append(job)

    # Then a page of 4 returns the 4 that are due first
    due = repo.due_for_sweep(0, iso(BASE_MS + 100), 4)
    assert [job.id for job in due] == [job.id for job in jobs[:4]]


def test_per_minute_throughput_counts_completions_and_failures_across_shards(repo: DynamoJobsRepository) -> None:
    # Given 12 jobs finishing in one minute (spread over the counter shards) and 2 failing in the next
    jobs = create_many(repo, 14)
    minute = BASE_MS - BASE_MS % 60_000
    for i, job in enumerate(jobs):
        status = JobStatus.COMPLETED if i < 12 else JobStatus.FAILED
        repo.save(job, transition(job, status, minute + (1_000 if i < 12 else 61_000)))
    keys = [iso(minute)[:16] + "Z", iso(minute + 60_000)[:16] + "Z", iso(minute + 120_000)[:16] + "Z"]
    # When
    counts = repo.throughput(TENANT_A, keys)
    # Then the minutes add up exactly, and the other tenant has none
    assert counts == {
        keys[0]: {"completed": 12, "failed": 0},
        keys[1]: {"completed": 0, "failed": 2},
        keys[2]: {"completed": 0, "failed": 0},
    }
    assert repo.throughput(TENANT_B, keys[:1]) == {keys[0]: {"completed": 0, "failed": 0}}


def test_a_settled_minute_is_read_from_its_summary_after_the_first_read(repo: DynamoJobsRepository) -> None:
    # Given 3 jobs completed in one minute and 1 in the next, both minutes settled, and a third minute still open
    jobs = create_many(repo, 4)
    minute = BASE_MS - BASE_MS % 60_000
    for i, job in enumerate(jobs):
        repo.save(job, transition(job, JobStatus.COMPLETED, minute + (1_000 if i < 3 else 61_000)))
    keys = [iso(minute + 60_000 * n)[:16] + "Z" for n in range(3)]
    expected = {
        keys[0]: {"completed": 3, "failed": 0},
        keys[1]: {"completed": 1, "failed": 0},
        keys[2]: {"completed": 0, "failed": 0},
    }
    # When the minutes are read once with the first two settled
    assert repo.throughput(TENANT_A, keys, settled_before=keys[2]) == expected
    # Then each settled minute has a summary (the open one none), and a later read answers from the summaries
    # alone: with the shards of the settled minutes gone, the counts stay
    ddb, table = runtime().repo._ddb, runtime().settings.stats_table
    summaries = [
        ddb.get_item(TableName=table, Key={"pk": {"S": f"{TENANT_A}#m#{key}#all"}}).get("Item") for key in keys
    ]
    assert [s is not None for s in summaries] == [True, True, False]
    assert summaries[0] is not None and summaries[0]["completed"] == {"N": "3"} and "expiresAt" in summaries[0]
    for key in keys[:2]:
        for shard in range(runtime().settings.throughput_shards):
            ddb.delete_item(TableName=table, Key={"pk": {"S": f"{TENANT_A}#m#{key}#{shard}"}})
    assert repo.throughput(TENANT_A, keys, settled_before=keys[2]) == expected


def test_a_sweep_mark_moves_without_a_version_change_and_only_on_the_version_read(
    repo: DynamoJobsRepository,
) -> None:
    # Given a running job whose mark is due
    job = make_job(created_ms=BASE_MS, sweep_at_ms=BASE_MS)
    repo.create(job)
    running = transition(job, JobStatus.PROCESSING, BASE_MS + 1, attempts=1, sweep_at=iso(BASE_MS))
    repo.save(job, running)
    read = repo.get(TENANT_A, job.id)
    assert read is not None
    shard = int(sweep_shard(job.id, runtime().settings.sweep_shards))
    # When the sweeper moves its mark on
    assert repo.move_sweep_mark(read, iso(BASE_MS + 60_000))
    # Then the sweep index has it at the new time, and the record keeps its version (the attempt's writes still work)
    assert repo.due_for_sweep(shard, iso(BASE_MS + 59_999), 10) == []
    moved = repo.due_for_sweep(shard, iso(BASE_MS + 60_000), 10)
    assert [(j.id, j.version, j.sweep_at) for j in moved] == [(job.id, read.version, iso(BASE_MS + 60_000))]
    repo.save(read, transition(read, JobStatus.COMPLETED, BASE_MS + 2, sweep_at=None))
    # And a move based on an older read changes nothing
    assert not repo.move_sweep_mark(read, iso(BASE_MS + 120_000))
    assert repo.due_for_sweep(shard, iso(BASE_MS + 10**9), 10) == []
