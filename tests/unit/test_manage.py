"""manage: get, list (query validation), cancel, retry and stats on behalf of a tenant."""

from __future__ import annotations

from typing import Any

import pytest

from functions.dal.jobs_repository import JobPage
from functions.logic import manage
from functions.models.errors import InvalidQuery, InvalidState, NotFound
from functions.models.job import Callback, CallbackStatus, HistoryEntry, Job, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, make_job

GRACE = 120
TENANT = "tenant-a"


def _store(repo: InMemoryJobsRepository, job: Job) -> Job:
    repo.create(job)
    return job


def _reload(repo: InMemoryJobsRepository, job: Job) -> Job:
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


# --- get ---


def test_get_returns_the_tenants_job(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = _store(repo, make_job(clock))
    assert manage.get_job(repo, TENANT, job.id) == job


def test_get_of_an_unknown_id_is_not_found(repo: InMemoryJobsRepository) -> None:
    with pytest.raises(NotFound) as caught:
        manage.get_job(repo, TENANT, "missing")
    assert (caught.value.status_code, caught.value.code) == (404, "NOT_FOUND")


def test_get_of_another_tenants_job_is_not_found(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = _store(repo, make_job(clock, tenant="tenant-b"))
    with pytest.raises(NotFound):
        manage.get_job(repo, TENANT, job.id)


# --- cancel ---


@pytest.mark.parametrize("status", [JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.RETRYING])
def test_cancel_of_a_waiting_job_cancels_it_with_a_history_entry(
    repo: InMemoryJobsRepository, clock: FakeClock, status: JobStatus
) -> None:
    # Given a job that has not started (or waits between attempts), with a sweep mark and a backoff time
    job = _store(repo, make_job(clock, status=status, sweep_at=clock.iso(60), next_attempt_at_ms=clock() + 5000))
    clock.advance(5)
    # When the client cancels it
    cancelled = manage.cancel_job(repo, TENANT, job.id, clock)
    # Then it is cancelled, stored, with a history entry, and the sweeper will not send it
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.history[-1] == HistoryEntry(status=JobStatus.CANCELLED, at=clock.iso())
    assert cancelled.history[:-1] == job.history
    assert cancelled.completed_at == cancelled.updated_at == clock.iso()
    assert (cancelled.sweep_at, cancelled.next_attempt_at_ms) == (None, None)
    assert _reload(repo, job).status == JobStatus.CANCELLED
    # And the counters moved
    assert (repo.counters(TENANT)[status.value], repo.counters(TENANT)["cancelled"]) == (0, 1)


def test_cancel_returns_the_stored_version(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = _store(repo, make_job(clock))
    assert manage.cancel_job(repo, TENANT, job.id, clock) == _reload(repo, job)


@pytest.mark.parametrize("status", [JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancel_of_a_running_or_finished_job_is_invalid_state(
    repo: InMemoryJobsRepository, clock: FakeClock, status: JobStatus
) -> None:
    job = _store(repo, make_job(clock, status=status, attempts=1))
    writes = repo.writes
    with pytest.raises(InvalidState) as caught:
        manage.cancel_job(repo, TENANT, job.id, clock)
    assert (caught.value.status_code, caught.value.code) == (409, "INVALID_STATE")
    assert repo.writes == writes
    assert _reload(repo, job) == job


def test_cancel_of_an_unknown_job_is_not_found(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    with pytest.raises(NotFound):
        manage.cancel_job(repo, TENANT, "missing", clock)


def test_cancel_racing_with_a_consumer_claim_decides_on_the_fresh_record(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given a consumer claiming the job between the cancel's read and its write
    job = _store(repo, make_job(clock))

    def claim() -> None:
        current = _reload(repo, job)
        repo.save(current, current.model_copy(update={"status": JobStatus.PROCESSING, "attempts": 1}))

    repo.before_next_save = claim
    # When the client cancels, then the second look sees processing and refuses
    with pytest.raises(InvalidState):
        manage.cancel_job(repo, TENANT, job.id, clock)
    assert _reload(repo, job).status == JobStatus.PROCESSING


# --- retry ---


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_retry_of_a_failed_or_cancelled_job_makes_it_pending_again_and_sends_it(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, status: JobStatus
) -> None:
    # Given a job that ended after 3 attempts with an error
    job = _store(
        repo,
        make_job(
            clock,
            status=status,
            attempts=3,
            error="boom",
            result="partial",
            completed_at=clock.iso(),
            run_at=clock.iso(-10),
        ),
    )
    clock.advance(30)
    # When the client retries it
    retried = manage.retry_job(repo, queue, TENANT, job.id, clock, GRACE)
    # Then it is pending with a fresh attempt budget, the error and result cleared, a history entry appended
    assert retried.status == JobStatus.PENDING
    assert retried.attempts == 0
    assert (retried.error, retried.result, retried.completed_at, retried.run_at) == (None, None, None, None)
    assert retried.history == (*job.history, HistoryEntry(status=JobStatus.PENDING, at=clock.iso()))
    assert retried.max_attempts == job.max_attempts
    # And it is stored, marked for the sweeper, and its message is sent
    assert _reload(repo, job) == retried
    assert retried.sweep_at == clock.iso(GRACE)
    assert [(sent.message.tenant, sent.message.job_id, sent.delay_seconds) for sent in queue.sends] == [
        (TENANT, job.id, 0)
    ]
    assert (repo.counters(TENANT)[status.value], repo.counters(TENANT)["pending"]) == (0, 1)


@pytest.mark.parametrize(
    "status", [JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING, JobStatus.COMPLETED]
)
def test_retry_of_any_other_status_is_invalid_state(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, status: JobStatus
) -> None:
    job = _store(repo, make_job(clock, status=status, attempts=1))
    with pytest.raises(InvalidState):
        manage.retry_job(repo, queue, TENANT, job.id, clock, GRACE)
    assert queue.sends == []
    assert _reload(repo, job) == job


def test_retry_with_sqs_down_still_succeeds_and_leaves_the_send_to_the_sweeper(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    queue = RecordingQueue(fail_sends=True)
    job = _store(repo, make_job(clock, status=JobStatus.FAILED, attempts=3))
    retried = manage.retry_job(repo, queue, TENANT, job.id, clock, GRACE)
    assert retried.status == JobStatus.PENDING
    assert queue.failed_sends == 1
    assert _reload(repo, job).sweep_at == clock.iso(GRACE)


def test_retry_of_an_unknown_job_is_not_found(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    with pytest.raises(NotFound):
        manage.retry_job(repo, queue, TENANT, "missing", clock, GRACE)


# --- list ---


class _SpyRepository(InMemoryJobsRepository):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage:
        self.calls.append((tenant, status, job_type, limit, cursor))
        return super().list_page(tenant, status, job_type, limit, cursor)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (TENANT, None, None, 50, None)),
        ({"status": "failed"}, (TENANT, JobStatus.FAILED, None, 50, None)),
        ({"type": "simulate", "limit": "100"}, (TENANT, None, "simulate", 100, None)),
        ({"limit": "1", "status": "", "type": "", "cursor": ""}, (TENANT, None, None, 1, None)),
    ],
)
def test_list_passes_validated_filters_to_the_repository(query: dict[str, str], expected: tuple[Any, ...]) -> None:
    repo = _SpyRepository()
    manage.list_jobs(repo, TENANT, query)
    assert repo.calls == [expected]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "done"},
        {"status": "FAILED"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "abc"},
        {"limit": "-1"},
        {"limit": "1.5"},
        {"limit": ""},
        {"sort": "asc"},
        {"status": "failed", "page": "2"},
    ],
)
def test_list_rejects_a_bad_query_with_invalid_query(query: dict[str, str]) -> None:
    repo = _SpyRepository()
    with pytest.raises(InvalidQuery) as caught:
        manage.list_jobs(repo, TENANT, query)
    assert (caught.value.status_code, caught.value.code) == (400, "INVALID_QUERY")
    assert repo.calls == []


def test_list_turns_the_repositorys_invalid_cursor_into_an_invalid_query() -> None:
    # Given a cursor the repository did not issue, when it is passed on, then the caller sees a 400 INVALID_QUERY
    with pytest.raises(InvalidQuery) as caught:
        manage.list_jobs(_SpyRepository(), TENANT, {"cursor": "garbage"})
    assert (caught.value.code, str(caught.value)) == (
        "INVALID_QUERY",
        "'cursor' is not a cursor returned by this listing",
    )


@pytest.mark.parametrize("limit", ["²", "1²"])
def test_list_rejects_a_unicode_digit_limit_with_invalid_query(limit: str) -> None:
    with pytest.raises(InvalidQuery):
        manage.list_jobs(_SpyRepository(), TENANT, {"limit": limit})


def test_list_returns_the_tenants_jobs_newest_first_with_filters(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    # Given jobs of two tenants created a second apart
    ids = []
    for n, status in enumerate([JobStatus.PENDING, JobStatus.FAILED, JobStatus.PENDING]):
        ids.append(_store(repo, make_job(clock, job_id=f"job-{n}", status=status)).id)
        clock.advance(1)
    _store(repo, make_job(clock, job_id="other", tenant="tenant-b"))
    # When the tenant lists all, then pending only
    everything = manage.list_jobs(repo, TENANT, {})
    pending = manage.list_jobs(repo, TENANT, {"status": "pending"})
    # Then it sees its own jobs, newest first, and the filter applies
    assert [job.id for job in everything.jobs] == ["job-2", "job-1", "job-0"]
    assert [job.id for job in pending.jobs] == ["job-2", "job-0"]
    assert everything.next_cursor is None


def test_list_pages_with_the_cursor(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    for n in range(5):
        _store(repo, make_job(clock, job_id=f"job-{n}"))
        clock.advance(1)
    first = manage.list_jobs(repo, TENANT, {"limit": "2"})
    assert first.next_cursor is not None
    second = manage.list_jobs(repo, TENANT, {"limit": "2", "cursor": first.next_cursor})
    assert second.next_cursor is not None
    third = manage.list_jobs(repo, TENANT, {"limit": "2", "cursor": second.next_cursor})
    assert [job.id for page in (first, second, third) for job in page.jobs] == [f"job-{n}" for n in range(4, -1, -1)]
    assert third.next_cursor is None


# --- stats ---


def _counts(repo: InMemoryJobsRepository, clock: FakeClock, **by_status: int) -> None:
    n = 0
    for status, count in by_status.items():
        for _ in range(count):
            _store(repo, make_job(clock, job_id=f"job-{n}", status=JobStatus(status)))
            n += 1


def test_stats_totals_and_rates(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given 10 jobs: 5 completed, 2 failed, 1 each scheduled, pending, cancelled
    _counts(repo, clock, completed=5, failed=2, scheduled=1, pending=1, cancelled=1)
    # When the stats are read
    stats = manage.job_stats(repo, TENANT)
    # Then total is the sum of the status counts, processed is completed+failed, rates are over the total
    assert stats == {
        "enqueued": 10,
        "processed": 7,
        "total": 10,
        "scheduled": 1,
        "pending": 1,
        "processing": 0,
        "retrying": 0,
        "completed": 5,
        "failed": 2,
        "cancelled": 1,
        "waiting": 0,
        "completionRate": 0.5,
        "failureRate": 0.2,
    }


def test_stats_of_a_tenant_without_jobs_are_zero_without_dividing_by_zero(repo: InMemoryJobsRepository) -> None:
    stats = manage.job_stats(repo, TENANT)
    assert stats["total"] == stats["processed"] == stats["enqueued"] == 0
    assert (stats["completionRate"], stats["failureRate"]) == (0.0, 0.0)


def test_stats_follow_transitions_and_ignore_other_tenants(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a tenant's job cancelled then retried, and another tenant's job
    job = _store(repo, make_job(clock))
    _store(repo, make_job(clock, tenant="tenant-b"))
    manage.cancel_job(repo, TENANT, job.id, clock)
    manage.retry_job(repo, queue, TENANT, job.id, clock, GRACE)
    # Then the tenant's counters show one pending job, enqueued once
    stats = manage.job_stats(repo, TENANT)
    assert (stats["total"], stats["pending"], stats["cancelled"], stats["enqueued"]) == (1, 1, 0, 1)


def test_stats_clamp_a_transiently_negative_counter_to_zero() -> None:
    # Given counters that are momentarily negative (a decrement read before its matching increment)
    class Skewed(InMemoryJobsRepository):
        def counters(self, tenant: str) -> dict[str, int]:
            return {**super().counters(tenant), "pending": -1, "completed": 3, "failed": 1}

    stats = manage.job_stats(Skewed(), TENANT)
    # Then no count is negative and the rates stay within 0..1
    assert stats["pending"] == 0
    assert stats["total"] == 4
    assert (stats["completionRate"], stats["failureRate"]) == (0.75, 0.25)


# --- completion callbacks ---


def test_cancel_arms_the_callback_sends_it_and_tells_after_final(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a pending job with a callback URL
    job = _store(repo, make_job(clock, callback=Callback(url="https://hooks.example.com/")))
    finals: list[Job] = []
    # When it is cancelled
    cancelled = manage.cancel_job(
        repo, TENANT, job.id, clock, queue=queue, pending_grace_seconds=GRACE, after_final=finals.append
    )
    # Then the stored record has its callback pending for this final version, with a sweep mark
    stored = _reload(repo, job)
    assert stored == cancelled
    assert stored.callback == Callback(
        url="https://hooks.example.com/", status=CallbackStatus.PENDING, for_version=stored.version
    )
    assert stored.sweep_at == clock.iso(GRACE)
    # And one callback message went out, and after_final saw the cancelled job
    assert [(sent.message.job_id, sent.message.kind) for sent in queue.sends] == [(job.id, "callback")]
    assert finals == [stored]


def test_cancel_of_a_job_without_callback_sends_nothing_but_still_tells_after_final(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    job = _store(repo, make_job(clock))
    finals: list[Job] = []
    manage.cancel_job(repo, TENANT, job.id, clock, queue=queue, after_final=finals.append)
    assert queue.sends == []
    assert [final.status for final in finals] == [JobStatus.CANCELLED]
    assert _reload(repo, job).sweep_at is None


def test_cancel_with_sqs_down_leaves_the_callback_to_the_sweeper(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    job = _store(repo, make_job(clock, callback=Callback(url="https://hooks.example.com/")))
    queue = RecordingQueue(fail_sends=True)
    cancelled = manage.cancel_job(repo, TENANT, job.id, clock, queue=queue, pending_grace_seconds=GRACE)
    assert cancelled.status == JobStatus.CANCELLED
    assert queue.failed_sends == 1
    assert _reload(repo, job).sweep_at == clock.iso(GRACE)


def test_retry_resets_the_callback_for_the_next_final_state(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a failed job whose callback was delivered
    delivered = Callback(
        url="https://hooks.example.com/",
        status=CallbackStatus.DELIVERED,
        attempts=2,
        last_error=None,
        delivered_at=clock.iso(),
        for_version=4,
    )
    job = _store(repo, make_job(clock, status=JobStatus.FAILED, attempts=3, callback=delivered))
    # When it is retried
    retried = manage.retry_job(repo, queue, TENANT, job.id, clock, GRACE)
    # Then its callback is back to "not final yet": same URL, no status, no attempts
    assert retried.callback == Callback(url="https://hooks.example.com/")
    assert _reload(repo, job).callback == Callback(url="https://hooks.example.com/")


# --- cancel all matching ---


def _jobs(repo: InMemoryJobsRepository, clock: FakeClock, count: int, start: int = 0, **fields: Any) -> list[Job]:
    made = []
    for number in range(start, start + count):
        clock.advance(ms=1)
        made.append(_store(repo, make_job(clock, job_id=f"00000000-0000-4000-8000-{number:012d}", **fields)))
    return made


def test_cancel_matching_cancels_cancellable_jobs_of_the_filter_only(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    pending = _jobs(repo, clock, 2)
    fetches = _jobs(repo, clock, 1, start=10, job_type="fetch", payload={"url": "https://example.com"})
    retrying = _jobs(repo, clock, 1, start=20, status=JobStatus.RETRYING, attempts=1)
    done = _jobs(repo, clock, 1, start=30, status=JobStatus.COMPLETED, attempts=1)
    theirs = _jobs(repo, clock, 1, start=40, tenant="tenant-b")

    assert manage.cancel_matching(repo, TENANT, JobStatus.RETRYING, None, clock) == {"cancelled": 1}
    assert manage.cancel_matching(repo, TENANT, None, "simulate", clock) == {"cancelled": 2}
    assert {_reload(repo, job).status for job in pending + retrying} == {JobStatus.CANCELLED}
    assert _reload(repo, fetches[0]).status == JobStatus.PENDING
    assert _reload(repo, done[0]).status == JobStatus.COMPLETED
    assert _reload(repo, theirs[0]).status == JobStatus.PENDING


def test_cancel_matching_stops_at_its_page_budget_and_says_more(
    repo: InMemoryJobsRepository, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manage, "CANCEL_PAGE_SIZE", 2)
    _jobs(repo, clock, 5)
    assert manage.cancel_matching(repo, TENANT, JobStatus.PENDING, None, clock, max_pages=2) == {
        "cancelled": 4,
        "more": True,
    }
    assert manage.cancel_matching(repo, TENANT, JobStatus.PENDING, None, clock, max_pages=2) == {"cancelled": 1}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "INVALID_BODY"),
        ({"status": "failed"}, "INVALID_OPTION"),
        ({"status": 1}, "INVALID_OPTION"),
        ({"type": None}, "INVALID_OPTION"),
        ({"other": "x"}, "INVALID_OPTION"),
        ({"type": "nope"}, "INVALID_TYPE"),
    ],
)
def test_cancel_matching_bodies_are_checked(body: Any, code: str) -> None:
    with pytest.raises(Exception) as caught:
        manage.parse_cancel_matching(body, ["fetch", "simulate"])
    assert getattr(caught.value, "code", None) == code


def test_cancel_matching_body_parses_its_filters() -> None:
    assert manage.parse_cancel_matching({}, ["fetch"]) == (None, None)
    assert manage.parse_cancel_matching({"status": "pending", "type": "fetch"}, ["fetch"]) == (
        JobStatus.PENDING,
        "fetch",
    )
