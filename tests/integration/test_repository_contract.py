"""The ``JobsRepository`` contract: every case runs against the unit tests' in-memory fake and against
``DynamoJobsRepository`` on moto, so the fake the unit tests trust cannot drift from the real repository.

Counters are read as the service reads them: the records do not write them, the stats aggregator counts them from
the table's stream (the fake's stream and the moto table's are both applied before a read of the counters).

The moto tables are made once for the module (a fresh account per case would cost a second each); every case
then works in tenants of its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, cast

import boto3
import pytest

from functions.dal.jobs_repository import (
    DynamoJobsRepository,
    IdempotencyClaim,
    InvalidCursor,
    JobsRepository,
    StatsItem,
    minute_key,
    sweep_shard,
)
from functions.logic.stats_stream import StatsStore
from functions.models.errors import ConcurrentUpdate, IdempotencyKeyUsed
from functions.models.job import HistoryEntry, Job, JobStatus, Progress
from functions.settings import Settings
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, make_job

BASE_MS = 1_800_000_000_000  # ahead of today: no record of these tests is past a retention period
NOW_S = BASE_MS // 1000


@dataclass
class Subject:
    repo: JobsRepository
    sweep_shards: int
    clock: FakeClock
    a: str  # the case's two tenants
    b: str

    def job(self, n: int, tenant: str | None = None, **fields: Any) -> Job:
        """Job number ``n`` (of tenant ``a`` unless told), created ``n`` seconds after the start."""
        clock = FakeClock(BASE_MS + n * 1000)
        return make_job(clock, job_id=f"00000000-0000-4000-8000-{n:012d}", tenant=tenant or self.a, **fields)

    def created(self, *numbers: int, tenant: str | None = None, **fields: Any) -> list[Job]:
        jobs = [self.job(n, tenant, **fields) for n in numbers]
        for job in jobs:
            self.repo.create(job)
        return jobs

    def move(self, job: Job, status: JobStatus, **changes: Any) -> Job:
        """Save ``job`` (as stored) in ``status``; returns the stored record."""
        at = self.clock.iso()
        after = job.model_copy(
            update={
                "status": status,
                "updated_at": at,
                "history": (*job.history, HistoryEntry(status=status, at=at)),
                **changes,
            }
        )
        self.repo.save(job, after)
        stored = self.repo.get(job.tenant, job.id)
        assert stored is not None
        return stored


_cases = itertools.count(1)


@pytest.fixture(params=["in-memory", "dynamodb"])
def subject(request: pytest.FixtureRequest) -> Subject:
    clock = FakeClock(BASE_MS + 3_600_000)
    if request.param == "in-memory":
        return Subject(InMemoryJobsRepository(sweep_shards=4), 4, clock, "tenant-a", "tenant-b")
    settings: Settings = request.getfixturevalue("local_tables")
    repo = DynamoJobsRepository.from_settings(boto3.client("dynamodb"), settings)
    case = next(_cases)
    return Subject(repo, settings.sweep_shards, clock, f"case-{case}-a", f"case-{case}-b")


def statuses(counters: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in counters.items() if name != "enqueued" and value}


# --- records ---


def test_a_created_job_reads_back_equal_and_only_for_its_tenant(subject: Subject) -> None:
    # Given a job with optional fields set
    job = subject.job(1, priority=9, group_id="g", run_at=subject.clock.iso(60), result={"a": [1, None]})

    # When it is created
    subject.repo.create(job)

    # Then it reads back equal, at version 0, for its tenant only; unknown and non-job ids read as None
    assert subject.repo.get(subject.a, job.id) == job
    assert subject.repo.get(subject.b, job.id) is None
    assert subject.repo.get(subject.a, "no-such-job") is None
    assert subject.repo.get(subject.a, "batch#x") is None


def test_creating_an_existing_job_is_a_concurrent_update(subject: Subject) -> None:
    [job] = subject.created(1)
    with pytest.raises(ConcurrentUpdate):
        subject.repo.create(job.model_copy(update={"priority": 1}))
    assert subject.repo.get(subject.a, job.id) == job


def test_a_save_bumps_the_version_and_a_stale_or_missing_one_is_a_concurrent_update(subject: Subject) -> None:
    # Given a job read twice
    [job] = subject.created(1)

    # When the first reader saves
    stored = subject.move(job, JobStatus.PROCESSING, attempts=1)

    # Then the record is the saved one at the next version
    assert (stored.version, stored.status, stored.attempts) == (1, JobStatus.PROCESSING, 1)
    # and the second reader's save from version 0, with or without a status change, is refused and writes nothing
    with pytest.raises(ConcurrentUpdate):
        subject.repo.save(job, job.model_copy(update={"status": JobStatus.CANCELLED}))
    with pytest.raises(ConcurrentUpdate):
        subject.repo.save(job, job.model_copy(update={"priority": 1}))
    assert subject.repo.get(subject.a, job.id) == stored
    # and a job never created cannot be saved
    ghost = subject.job(2)
    with pytest.raises(ConcurrentUpdate):
        subject.repo.save(ghost, ghost.model_copy(update={"priority": 1}))
    assert subject.repo.get(subject.a, ghost.id) is None


def test_a_pending_job_is_claimed_in_one_write_as_start_and_mark_in_flight_would_write_it(subject: Subject) -> None:
    # Given a pending job with a sweep mark and one without
    [marked] = subject.created(1, sweep_at=subject.clock.iso(30))
    [unmarked] = subject.created(2)
    at, lease = subject.clock.iso(), subject.clock.now_ms + 60_000
    latest = subject.clock.iso(960)

    # When each is claimed
    claims = [subject.repo.claim_pending(subject.a, job.id, job.type, at, lease, latest) for job in (marked, unmarked)]

    # Then each is the started job at the next version, its mark kept (or set to the latest), and stored as returned
    for claim, job in zip(claims, (marked, unmarked), strict=True):
        expected = job.start(at, lease_until_ms=lease).model_copy(
            update={"version": 1, "sweep_at": job.sweep_at or latest}
        )
        assert (claim.claimed, claim.job) == (True, expected)
        assert subject.repo.get(subject.a, job.id) == expected
    # and the record now shows one attempt under way
    assert claims[0].job is not None
    assert (claims[0].job.status, claims[0].job.attempts, claims[0].job.history[-1].attempt) == (
        JobStatus.PROCESSING,
        1,
        1,
    )


def test_a_claim_that_cannot_be_made_writes_nothing_and_returns_the_record_as_it_stood(subject: Subject) -> None:
    # Given a claimed job, a cancelled one, one whose mark is due after the latest, and one of another type
    [claimed, cancelled, late, other] = subject.created(1, 2, 3, 4)
    at, lease, latest = subject.clock.iso(), subject.clock.now_ms + 60_000, subject.clock.iso(960)
    claimed = subject.repo.claim_pending(subject.a, claimed.id, claimed.type, at, lease, latest).job
    assert claimed is not None
    cancelled = subject.move(cancelled, JobStatus.CANCELLED)
    late = subject.move(late, JobStatus.PENDING, sweep_at=subject.clock.iso(2000))

    # When each is claimed (the last naming the wrong type), and a job that does not exist
    results = [
        subject.repo.claim_pending(subject.a, job.id, job_type, at, lease, latest)
        for job, job_type in ((claimed, claimed.type), (cancelled, cancelled.type), (late, late.type), (other, "x"))
    ]
    missing = subject.repo.claim_pending(subject.a, subject.job(9).id, "simulate", at, lease, latest)
    foreign = subject.repo.claim_pending(subject.b, other.id, other.type, at, lease, latest)

    # Then none is claimed, each returns the record unchanged, and nothing was written
    assert [(result.claimed, result.job) for result in results] == [
        (False, claimed),
        (False, cancelled),
        (False, late),
        (False, other),
    ]
    assert [subject.repo.get(subject.a, job.id) for job in (claimed, cancelled, late, other)] == [
        claimed,
        cancelled,
        late,
        other,
    ]
    assert (missing.claimed, missing.job, foreign.claimed, foreign.job) == (False, None, False, None)


def test_progress_is_recorded_on_the_current_version_only_and_keeps_it(subject: Subject) -> None:
    # Given a job being processed
    [job] = subject.created(1)
    current = subject.move(job, JobStatus.PROCESSING, attempts=1)

    # When progress is recorded from the current record, then from a stale one
    half_way = Progress(percent=40, message="half way", at=subject.clock.iso())
    recorded = subject.repo.record_progress(current, half_way)
    stale = subject.repo.record_progress(job, Progress(percent=90, at=subject.clock.iso()))

    # Then the first is stored without a new version, the stale one is refused
    stored = subject.repo.get(subject.a, job.id)
    assert (recorded, stale) == (True, False)
    assert stored is not None
    assert (stored.progress, stored.version) == (half_way, current.version)


def test_create_many_stores_all_and_a_resumed_call_skips_what_is_stored(subject: Subject) -> None:
    # Given three jobs of a batch
    jobs = [subject.job(n) for n in range(1, 4)]

    # When they are created together, then again (a retry of the same request)
    first = subject.repo.create_many(jobs)
    again = subject.repo.create_many(jobs, resume=True)

    # Then the first call stored them all, the resumed one nothing, and a plain repeat is refused
    assert (first, again) == (3, 0)
    assert [subject.repo.get(subject.a, job.id) for job in jobs] == jobs
    with pytest.raises(ConcurrentUpdate):
        subject.repo.create_many(jobs)


def test_due_for_sweep_lists_the_marked_jobs_of_a_shard_up_to_a_time(subject: Subject) -> None:
    # Given jobs marked for the sweeper at different times, and one unmarked
    marked = [subject.job(n, sweep_at=subject.clock.iso(n)) for n in range(1, 9)]
    for job in [*marked, subject.job(20)]:
        subject.repo.create(job)

    # When each shard is asked for what is due by +4 s
    due = [
        job.id
        for shard in range(subject.sweep_shards)
        for job in subject.repo.due_for_sweep(shard, subject.clock.iso(4), limit=100)
        if job.tenant == subject.a
    ]

    # Then exactly the marked jobs due by then are found, each in its own shard
    assert sorted(due) == sorted(job.id for job in marked[:4])
    for job in marked[:4]:
        shard = int(sweep_shard(job.id, subject.sweep_shards))
        found = subject.repo.due_for_sweep(shard, subject.clock.iso(4), limit=100)
        assert (job.tenant, job.id) in [(each.tenant, each.id) for each in found]


# --- listing ---


def _all_pages(
    repo: JobsRepository, tenant: str, status: JobStatus | None, job_type: str | None, limit: int
) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        page = repo.list_page(tenant, status, job_type, limit, cursor)
        assert len(page.jobs) <= limit
        ids += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    raise AssertionError("the listing does not end")


def test_listings_are_newest_first_per_tenant_by_status_and_type_across_pages(subject: Subject) -> None:
    # Given jobs of two types, some moved on to processing and to completed, and another tenant's
    jobs = subject.created(*range(1, 8))
    subject.created(30, tenant=subject.b)
    messages = [subject.repo.create(subject.job(n, job_type="message", payload={"m": n})) for n in (10, 11)]
    assert messages == [None, None]
    processing = subject.move(jobs[2], JobStatus.PROCESSING)
    completed = subject.move(subject.move(jobs[4], JobStatus.PROCESSING), JobStatus.COMPLETED)

    def ids(*numbers: int) -> list[str]:
        return [subject.job(n).id for n in numbers]

    # Then every listing, read two at a time with its cursors, holds each of its jobs once, newest first
    assert _all_pages(subject.repo, subject.a, None, None, 2) == ids(11, 10, 7, 6, 5, 4, 3, 2, 1)
    assert _all_pages(subject.repo, subject.a, JobStatus.PENDING, None, 2) == ids(11, 10, 7, 6, 4, 2, 1)
    assert _all_pages(subject.repo, subject.a, JobStatus.PROCESSING, None, 2) == [processing.id]
    assert _all_pages(subject.repo, subject.a, JobStatus.COMPLETED, None, 2) == [completed.id]
    assert _all_pages(subject.repo, subject.a, None, "message", 1) == ids(11, 10)
    assert _all_pages(subject.repo, subject.a, JobStatus.PENDING, "simulate", 3) == ids(7, 6, 4, 2, 1)
    assert _all_pages(subject.repo, subject.b, None, None, 5) == [subject.job(30, subject.b).id]
    assert _all_pages(subject.repo, "nobody", None, None, 5) == []


def test_a_last_page_has_no_cursor_and_a_full_one_does(subject: Subject) -> None:
    subject.created(1, 2)
    assert subject.repo.list_page(subject.a, None, None, 2, None).next_cursor is None
    assert subject.repo.list_page(subject.a, None, None, 1, None).next_cursor is not None


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "e30", "W10", "bnVsbA", '{"pk":"x"}'])
def test_a_cursor_not_issued_by_the_repository_is_an_invalid_cursor(subject: Subject, cursor: str) -> None:
    subject.created(1)
    with pytest.raises(InvalidCursor):
        subject.repo.list_page(subject.a, None, None, 5, cursor)


def test_a_cursor_only_resumes_the_listing_that_issued_it(subject: Subject) -> None:
    # Given cursors of tenant A's listing and of its pending listing
    subject.created(1, 2, 3)
    subject.created(4, 5, tenant=subject.b)
    cursor = subject.repo.list_page(subject.a, None, None, 1, None).next_cursor
    pending_cursor = subject.repo.list_page(subject.a, JobStatus.PENDING, None, 1, None).next_cursor
    assert cursor and pending_cursor

    # Then neither works for tenant B, nor for another listing of A
    for tenant, status, given in [
        (subject.b, None, cursor),
        (subject.b, JobStatus.PENDING, pending_cursor),
        (subject.a, None, pending_cursor),
        (subject.a, JobStatus.CANCELLED, pending_cursor),
    ]:
        with pytest.raises(InvalidCursor):
            subject.repo.list_page(tenant, status, None, 1, given)
    # and it resumes its own
    assert len(subject.repo.list_page(subject.a, None, None, 5, cursor).jobs) == 2


# --- idempotency claims ---


def _claim(key: str, target: str, *, expires_in: int = 3600, now: int = NOW_S) -> IdempotencyClaim:
    return IdempotencyClaim(key=key, fingerprint=f"fp-{target}", target_id=target, expires_at=now + expires_in, now=now)


def test_a_key_claimed_with_a_job_names_that_job_to_the_next_claimant(subject: Subject) -> None:
    # Given a job created with an idempotency key
    first, second = subject.job(1), subject.job(2)
    subject.repo.create(first, _claim("order-1", first.id))

    # When another job is created with the same key, or the key is claimed alone
    with pytest.raises(IdempotencyKeyUsed) as by_create:
        subject.repo.create(second, _claim("order-1", second.id))
    with pytest.raises(IdempotencyKeyUsed) as by_claim:
        subject.repo.claim_idempotency(subject.a, _claim("order-1", "batch-9"))

    # Then both are told the holder and its fingerprint, and the second job was not stored
    assert (by_create.value.target_id, by_create.value.fingerprint) == (first.id, f"fp-{first.id}")
    assert (by_claim.value.target_id, by_claim.value.fingerprint) == (first.id, f"fp-{first.id}")
    assert subject.repo.get(subject.a, second.id) is None


def test_a_key_is_per_tenant_and_an_expired_claim_may_be_taken_over(subject: Subject) -> None:
    # Given a claim of tenant A that expires in 10 s
    subject.repo.claim_idempotency(subject.a, _claim("import", "batch-1", expires_in=10))

    # Then tenant B may claim the same key, and A may too once the claim has expired
    subject.repo.claim_idempotency(subject.b, _claim("import", "batch-2"))
    subject.repo.claim_idempotency(subject.a, _claim("import", "batch-3", now=NOW_S + 11))
    with pytest.raises(IdempotencyKeyUsed) as caught:
        subject.repo.claim_idempotency(subject.a, _claim("import", "batch-4", now=NOW_S + 12))
    assert caught.value.target_id == "batch-3"


# --- counters (counted from the stream, not by the writes) ---


def test_counters_count_creations_and_status_changes_only(subject: Subject) -> None:
    # Given three jobs: one completes, one fails after a retry, one is updated without a status change
    first, second, third = subject.created(1, 2, 3)
    subject.move(subject.move(first, JobStatus.PROCESSING), JobStatus.COMPLETED)
    retrying = subject.move(subject.move(second, JobStatus.PROCESSING), JobStatus.RETRYING)
    subject.move(subject.move(retrying, JobStatus.PROCESSING), JobStatus.FAILED)
    subject.repo.save(third, third.model_copy(update={"priority": 9}))

    # When the counters are read
    counters = subject.repo.counters(subject.a)

    # Then each job counts once, in its current status, and enqueued counts the creations
    assert counters["enqueued"] == 3
    assert statuses(counters) == {"completed": 1, "failed": 1, "pending": 1}
    assert set(counters) == {"enqueued", *(status.value for status in JobStatus)}
    assert statuses(subject.repo.counters(subject.b)) == {} and subject.repo.counters(subject.b)["enqueued"] == 0


def test_a_refused_write_counts_nothing(subject: Subject) -> None:
    # Given a job, and writes that lose their race
    [job] = subject.created(1)
    subject.move(job, JobStatus.PROCESSING)
    with pytest.raises(ConcurrentUpdate):
        subject.repo.save(job, job.model_copy(update={"status": JobStatus.CANCELLED}))
    with pytest.raises(ConcurrentUpdate):
        subject.repo.create(job)

    # Then the counters hold the one job, processing
    counters = subject.repo.counters(subject.a)
    assert (counters["enqueued"], statuses(counters)) == (1, {"processing": 1})


def test_throughput_counts_completions_and_failures_in_the_minute_they_happen(subject: Subject) -> None:
    # Given a completion and a failure in one minute, and a completion in the next
    first, second, third = subject.created(1, 2, 3)
    minute = minute_key(subject.clock.iso())
    subject.move(subject.move(first, JobStatus.PROCESSING), JobStatus.COMPLETED)
    subject.move(subject.move(second, JobStatus.PROCESSING), JobStatus.FAILED)
    subject.clock.advance(60)
    next_minute = minute_key(subject.clock.iso())
    subject.move(subject.move(third, JobStatus.PROCESSING), JobStatus.COMPLETED)

    # When the two minutes and one without events are read
    quiet = minute_key(subject.clock.iso(60))
    counts = subject.repo.throughput(subject.a, [minute, next_minute, quiet])

    # Then each minute has its own counts
    assert counts == {
        minute: {"completed": 1, "failed": 1},
        next_minute: {"completed": 1, "failed": 0},
        quiet: {"completed": 0, "failed": 0},
    }


# --- the stats aggregator's writes: a stream shard's records once per stats item, in order ---


def _seq(n: int) -> str:
    return str(n).zfill(40)


def test_a_counter_item_takes_each_stream_shards_records_once(subject: Subject) -> None:
    # Given a tenant's counters that took records 1..3 of shard 1
    store = cast(StatsStore, subject.repo)  # both repositories are the aggregator's store
    item = StatsItem(subject.a)
    assert store.add_once("shard-1", item, _seq(1), _seq(3), {"enqueued": 1, "pending": 1}, NOW_S) is None

    # When those records come again, whole or in part, then the next one, then another shard's
    again = store.add_once("shard-1", item, _seq(1), _seq(3), {"enqueued": 1, "pending": 1}, NOW_S)
    overlapping = store.add_once("shard-1", item, _seq(3), _seq(4), {"pending": 5}, NOW_S)
    after = store.add_once("shard-1", item, _seq(4), _seq(4), {"pending": -1, "processing": 1}, NOW_S)
    other = store.add_once("shard-2", item, _seq(1), _seq(1), {"enqueued": 1, "pending": 1}, NOW_S)

    # Then what the item had is refused (answered with the last record it has of that shard), the rest is added
    assert (again, overlapping, after, other) == (_seq(3), _seq(3), None, None)
    counters = subject.repo.counters(subject.a)
    assert (counters["enqueued"], statuses(counters)) == (2, {"pending": 1, "processing": 1})


def test_a_minute_item_takes_each_stream_shards_records_once(subject: Subject) -> None:
    store = cast(StatsStore, subject.repo)
    minute = minute_key(subject.clock.iso())
    item = StatsItem(subject.a, minute)
    assert store.add_once("shard-1", item, _seq(7), _seq(7), {"completed": 1}, NOW_S) is None
    assert store.add_once("shard-1", item, _seq(7), _seq(7), {"completed": 1}, NOW_S) == _seq(7)
    assert subject.repo.throughput(subject.a, [minute]) == {minute: {"completed": 1, "failed": 0}}
