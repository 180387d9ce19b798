"""DynamoJobsRepository's pure parts: the item mapping and the listing cursor (no AWS involved)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.dal.jobs_repository import (
    DynamoJobsRepository,
    _decode_cursor,
    _encode_cursor,
    key_shard,
    sweep_shard,
)
from functions.models.errors import InvalidQuery
from functions.models.job import HistoryEntry, Job, JobStatus
from tests.unit.fakes import FakeClock, make_job

SHARDS = 4


def _repo(client: Any = None, listing_shards: int = SHARDS, read_budget: int = 1_000) -> DynamoJobsRepository:
    return DynamoJobsRepository(
        client=client,
        jobs_table="jobs",
        stats_table="stats",
        stats_shards=8,
        sweep_shards=SHARDS,
        listing_shards=listing_shards,
        throughput_shards=2,
        listing_read_budget=read_budget,
    )


@pytest.fixture
def ddb() -> DynamoJobsRepository:
    return _repo()


def _full_job(clock: FakeClock) -> Job:
    return make_job(
        clock,
        payload={"target": "caf\u00e9 \u2615 \U0001f600", "ratio": 0.1, "nested": {"x": [1.5, -2.25e-10, None, True]}},
        status=JobStatus.RETRYING,
        attempts=2,
        max_attempts=7,
        priority=9,
        run_at=clock.iso(60),
        started_at=clock.iso(1),
        completed_at=clock.iso(2),
        result={"size": [800, 600], "score": 0.75, "label": "\u00fc"},
        error="TimeoutError: slow",
        history=(
            HistoryEntry(status=JobStatus.SCHEDULED, at=clock.iso()),
            HistoryEntry(status=JobStatus.PENDING, at=clock.iso(60)),
            HistoryEntry(status=JobStatus.PROCESSING, at=clock.iso(60), attempt=1),
            HistoryEntry(status=JobStatus.RETRYING, at=clock.iso(61), attempt=1, error="boom"),
        ),
        version=12,
        lease_until_ms=clock() + 5000,
        next_attempt_at_ms=clock() + 9000,
        sweep_at=clock.iso(300),
    )


def test_a_job_with_every_field_survives_the_item_round_trip(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    # Given a job with nested floats and unicode, history entries with and without attempt/error, all options set
    job = _full_job(clock)
    # When it is mapped to an item and back
    back = DynamoJobsRepository._from_item(ddb._to_item(job))
    # Then nothing is lost, including the fields excluded from the API (tenant, version, lease, sweep mark)
    assert back == job
    assert (back.tenant, back.version, back.lease_until_ms, back.sweep_at) == (
        job.tenant,
        12,
        job.lease_until_ms,
        job.sweep_at,
    )
    assert back.payload["nested"]["x"][1] == -2.25e-10


def test_a_minimal_job_round_trips_with_its_optional_fields_absent(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    # Given a new pending job with no optional field set
    job = make_job(clock, payload={})
    # When it is mapped
    item = ddb._to_item(job)
    # Then the optional attributes are not written at all, and reading gives the same job
    for absent in (
        "runAt",
        "startedAt",
        "completedAt",
        "error",
        "resultJson",
        "leaseUntil",
        "nextAttemptAt",
        "sweepAt",
        "sweepShard",
    ):
        assert absent not in item
    assert DynamoJobsRepository._from_item(item) == job


@pytest.mark.parametrize("result", [0, "", False, [], {}])
def test_a_falsy_result_is_kept(ddb: DynamoJobsRepository, clock: FakeClock, result: Any) -> None:
    job = make_job(clock, status=JobStatus.COMPLETED, result=result)
    assert DynamoJobsRepository._from_item(ddb._to_item(job)).result == result


def test_the_item_carries_the_keys_of_every_listing_index(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    job = make_job(clock, tenant="acme", status=JobStatus.FAILED, job_type="simulate")
    item = ddb._to_item(job)
    shard = key_shard(job.id, SHARDS)
    assert item["pk"] == {"S": f"acme#{job.id}"}
    assert item["createdKey"] == {"S": f"{job.created_at}#{job.id}"}
    assert item["tenantKey"] == {"S": f"acme#{shard}"}
    assert item["tenantStatus"] == {"S": f"acme#failed#{shard}"}
    assert item["tenantType"] == {"S": f"acme#simulate#{shard}"}
    assert item["tenant"] == {"S": "acme"}


@pytest.mark.parametrize(
    ("status", "partition"),
    [
        (JobStatus.PENDING, "in-flight"),
        (JobStatus.PROCESSING, "in-flight"),
        (JobStatus.RETRYING, "in-flight"),
        (JobStatus.SCHEDULED, "scheduled"),
        (JobStatus.COMPLETED, "completed"),
        (JobStatus.FAILED, "failed"),
        (JobStatus.CANCELLED, "cancelled"),
    ],
)
def test_the_in_flight_statuses_share_one_status_partition(
    ddb: DynamoJobsRepository, clock: FakeClock, status: JobStatus, partition: str
) -> None:
    job = make_job(clock, tenant="acme", status=status)
    assert ddb._to_item(job)["tenantStatus"] == {"S": f"acme#{partition}#{key_shard(job.id, SHARDS)}"}


def test_claiming_and_retrying_a_job_move_no_index_entry(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    # Given a job's records as it is claimed, fails an attempt, is claimed again and completes
    job = make_job(clock, status=JobStatus.PENDING)
    path = [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING, JobStatus.PROCESSING, JobStatus.COMPLETED]
    items = [ddb._to_item(job.model_copy(update={"status": status, "version": n})) for n, status in enumerate(path)]
    # Then every listing key stays put until the final status (an index key that changes is a delete and a put)
    index_keys = [{name: item[name] for name in ("tenantKey", "tenantStatus", "tenantType")} for item in items]
    assert index_keys[0] == index_keys[1] == index_keys[2] == index_keys[3]
    assert index_keys[4]["tenantStatus"] != index_keys[3]["tenantStatus"]


def test_a_jobs_listing_shard_is_stable_across_its_writes(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    # Given a job, and the same job later in another status
    job = make_job(clock, job_id="00000000-0000-4000-8000-0000000000aa")
    later = job.model_copy(update={"status": JobStatus.COMPLETED, "version": 5})
    # Then both items name the same shard in every listing key (a status change moves it to the new status's
    # partition of that shard, nowhere else)
    before, after = ddb._to_item(job), ddb._to_item(later)
    assert before["tenantKey"] == after["tenantKey"]
    assert before["tenantStatus"]["S"].rsplit("#", 1)[1] == after["tenantStatus"]["S"].rsplit("#", 1)[1]


def test_listing_shards_spread_a_tenants_jobs_evenly() -> None:
    counts = [0] * 32
    for n in range(3200):
        counts[key_shard(f"00000000-0000-4000-8000-{n:012d}", 32)] += 1
    # Every shard gets its share within 40 % (a binomial with mean 100: far outside would mean a skewed hash)
    assert min(counts) > 60 and max(counts) < 140


def test_a_sweep_mark_puts_the_job_in_the_sparse_sweep_index(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    # Given a job with a sweep mark, and the same job without
    marked = make_job(clock, sweep_at=clock.iso(120))
    unmarked = marked.model_copy(update={"sweep_at": None})
    # Then only the marked one has sweepShard/sweepAt, the shard derived from the id
    item = ddb._to_item(marked)
    assert item["sweepAt"] == {"S": clock.iso(120)}
    assert item["sweepShard"] == {"S": sweep_shard(marked.id, SHARDS)}
    assert "sweepAt" not in ddb._to_item(unmarked)
    assert "sweepShard" not in ddb._to_item(unmarked)


def test_sweep_shards_are_stable_and_spread(ddb: DynamoJobsRepository) -> None:
    shards = [sweep_shard(f"job-{n}", SHARDS) for n in range(400)]
    assert set(shards) == {"0", "1", "2", "3"}
    assert min(shards.count(s) for s in set(shards)) > 50
    assert sweep_shard("job-1", SHARDS) == sweep_shard("job-1", SHARDS)


def test_numbers_are_written_as_dynamodb_numbers(ddb: DynamoJobsRepository, clock: FakeClock) -> None:
    item = ddb._to_item(_full_job(clock))
    for name in ("priority", "attempts", "maxAttempts", "version", "leaseUntil", "nextAttemptAt"):
        assert set(item[name]) == {"N"}
        int(item[name]["N"])
    assert item["history"]["L"][3]["M"] == {
        "status": {"S": "retrying"},
        "at": {"S": clock.iso(61)},
        "attempt": {"N": "1"},
        "error": {"S": "boom"},
    }


# --- cursors ---


def _cursor_for(partition: str = "tenant-a#pending", index: str = "by-status") -> str:
    return _encode_cursor({"i": index, "p": partition, "after": "2026-01-01T00:00:00.000Z#job-1"})


def test_a_cursor_round_trips_to_the_key_it_resumes_after() -> None:
    # Given the last key of a page of tenant-a's pending jobs
    cursor = _cursor_for()
    # Then the cursor is URL-safe, unpadded text that decodes to that createdKey
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert _decode_cursor(cursor, "by-status", "tenant-a#pending") == "2026-01-01T00:00:00.000Z#job-1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        "abc",
        _b64(b"\xff\xfe\xfd"),
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b'"text"'),
        _b64(json.dumps({"i": "by-status", "p": "tenant-a#pending"}).encode()),
        _b64(json.dumps({"i": "by-status", "p": "tenant-a#pending", "after": 1}).encode()),
        _b64(json.dumps({"i": "by-status", "p": "tenant-a#pending", "after": ""}).encode()),
        _b64(json.dumps({"i": "by-status", "p": "tenant-a#pending", "after": "x" * 301}).encode()),
        _b64(json.dumps({"i": "by-status", "p": "tenant-a#pending", "after": "x", "more": "y"}).encode()),
        # the old (unsharded) form: an ExclusiveStartKey
        _b64(json.dumps({"pk": "tenant-a#j", "tenantStatus": "tenant-a#pending", "createdKey": "x"}).encode()),
    ],
)
def test_a_garbage_cursor_is_invalid_query(cursor: str) -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(cursor, "by-status", "tenant-a#pending")


def test_another_tenants_cursor_is_invalid_query() -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-b#pending"), "by-status", "tenant-a#pending")


def test_a_cursor_of_another_listing_of_the_same_tenant_is_invalid_query() -> None:
    # Given a cursor from the failed listing, used on the pending listing
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-a#failed"), "by-status", "tenant-a#pending")


def test_a_cursor_of_another_index_is_invalid_query() -> None:
    # Given a cursor of the by-type index whose partition text happens to equal a by-status partition's
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-a#pending", index="by-type"), "by-status", "tenant-a#pending")


def test_a_deeply_nested_cursor_is_invalid_query_not_a_crash() -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(_b64(b"[" * 1000), "by-status", "tenant-a#pending")


# --- listing across shards ---


class ShardedIndex:
    """A DynamoDB client over a jobs table's items: Query on a listing index as DynamoDB answers it (one partition,
    ``createdKey < :after``, newest first, Limit before the type filter, LastEvaluatedKey), BatchGetItem of records
    (leaving one key unprocessed on its first call)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.queries: list[dict[str, Any]] = []
        self.batch_calls = 0
        self.keys_read: list[int] = []  # keys asked per BatchGetItem

    def query(self, **request: Any) -> dict[str, Any]:
        self.queries.append(request)
        names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
        partition = [i for i in self.items if i.get(names["#p"]) == values[":p"]]
        ordered = sorted(partition, key=lambda i: i["createdKey"]["S"], reverse=True)
        if ":after" in values:
            ordered = [i for i in ordered if i["createdKey"]["S"] < values[":after"]["S"]]
        if "ExclusiveStartKey" in request:
            start = request["ExclusiveStartKey"]["createdKey"]["S"]
            ordered = [i for i in ordered if i["createdKey"]["S"] < start]
        evaluated = ordered[: request["Limit"]]
        kept = [i for i in evaluated if ":t" not in values or i["type"] == values[":t"]]
        projected = ("pk", "createdKey", names["#p"], "type")
        response: dict[str, Any] = {"Items": [{k: i[k] for k in projected} for i in kept]}
        if len(ordered) > request["Limit"]:
            last = evaluated[-1]
            response["LastEvaluatedKey"] = {k: last[k] for k in ("pk", "createdKey", names["#p"])}
        return response

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_calls += 1
        keys = [key["pk"]["S"] for key in RequestItems["jobs"]["Keys"]]
        self.keys_read.append(len(keys))
        answered, unprocessed = (keys[:-1], keys[-1:]) if self.batch_calls == 1 else (keys, [])
        records = {i["pk"]["S"]: i for i in self.items}
        response: dict[str, Any] = {"Responses": {"jobs": [records[k] for k in answered if k in records]}}
        if unprocessed:
            response["UnprocessedKeys"] = {"jobs": {"Keys": [{"pk": {"S": k}} for k in unprocessed]}}
        return response


def _jobs(clock: FakeClock, count: int, **fields: Any) -> list[Job]:
    jobs = []
    for n in range(count):
        clock.advance(1)
        jobs.append(make_job(clock, job_id=f"00000000-0000-4000-8000-{n:012d}", **fields))
    return jobs


def test_a_listing_reads_its_records_by_key_newest_first_and_drops_those_that_moved_on(clock: FakeClock) -> None:
    # Given four pending jobs in the in-flight partition, whose records say: one has started since, one is gone
    repo = _repo()
    jobs = _jobs(clock, 4)
    index_items = [repo._to_item(job) for job in jobs]
    moved_on = repo._to_item(jobs[1].model_copy(update={"status": JobStatus.PROCESSING}))
    client = ShardedIndex(index_items)
    stale_index = dict(index_items[1])
    client.items = [index_items[0], index_items[3], {**moved_on, "tenantStatus": stale_index["tenantStatus"]}]
    repo._ddb = client

    # When the pending jobs are listed
    page = repo.list_page(jobs[0].tenant, JobStatus.PENDING, None, limit=10, cursor=None)

    # Then the page holds the two that are still pending, newest first, the left-over key read again
    assert [job.id for job in page.jobs] == [jobs[3].id, jobs[0].id]
    assert client.batch_calls == 2
    assert page.next_cursor is None
    # And every shard's partition of that status was asked, none twice
    asked = sorted(q["ExpressionAttributeValues"][":p"]["S"] for q in client.queries)
    assert asked == sorted(f"tenant-a#in-flight#{shard}" for shard in range(SHARDS))


def test_a_sparse_status_listing_examines_a_bounded_number_of_entries_per_page(clock: FakeClock) -> None:
    # Given one processing job behind 25 newer pending ones (all in the in-flight partition), and a budget of 10
    repo = _repo(listing_shards=2, read_budget=10)
    oldest, *pending = _jobs(clock, 26)
    processing = [oldest.model_copy(update={"status": JobStatus.PROCESSING})]
    client = ShardedIndex([repo._to_item(job) for job in processing + pending])
    repo._ddb = client
    # When the processing jobs are listed page by page
    pages = []
    cursor = None
    for _ in range(10):
        page = repo.list_page("tenant-a", JobStatus.PROCESSING, None, limit=5, cursor=cursor)
        pages.append([job.id for job in page.jobs])
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then the pages before it are empty but carry a cursor, none read more than its budget of records, and the
    # job comes on the last page
    assert pages == [[], [], [processing[0].id]]
    assert cursor is None
    assert sum(client.keys_read) <= 10 * len(pages) + 1  # + the key the fake leaves unprocessed once


LISTED_STATUSES = [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING, JobStatus.FAILED, JobStatus.COMPLETED]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 40),
    limit=st.integers(1, 12),
    shards=st.integers(1, 6),
    budget=st.integers(1, 30),
    statuses=st.lists(st.sampled_from(LISTED_STATUSES), min_size=40, max_size=40),
    listed=st.sampled_from(LISTED_STATUSES),
    listing=st.sampled_from(["tenant", "status", "type", "status+type"]),
)
def test_paging_through_any_listing_returns_each_matching_job_once_newest_first(
    count: int,
    limit: int,
    shards: int,
    budget: int,
    statuses: list[JobStatus],
    listed: JobStatus,
    listing: str,
) -> None:
    # Given jobs spread over the shards, in final and in-flight statuses, of two types
    clock = FakeClock()
    repo = _repo(listing_shards=shards, read_budget=budget)
    jobs = [
        job.model_copy(update={"status": statuses[n], "type": "simulate" if n % 3 else "fetch"})
        for n, job in enumerate(_jobs(clock, count))
    ]
    client = ShardedIndex([repo._to_item(job) for job in jobs])
    repo._ddb = client
    status = listed if "status" in listing else None
    job_type = "simulate" if "type" in listing else None
    expected = [
        job.id
        for job in reversed(jobs)
        if (status is None or job.status == status) and (job_type is None or job.type == job_type)
    ]

    # When the listing is read page by page with its cursors
    seen: list[str] = []
    cursor = None
    for _ in range(count + 2):  # a page examines at least one entry, so count + 1 pages read them all
        page = repo.list_page("tenant-a", status, job_type, limit=limit, cursor=cursor)
        assert len(page.jobs) <= limit
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then the pages hold every matching job exactly once, newest first, and the last page says so
    assert seen == expected
    assert cursor is None


# --- counters over many shards ---


class CounterTable:
    """BatchGetItem as DynamoDB answers it: at most 100 keys a call (more is a ValidationException), and a call may
    leave keys unprocessed (here: the last key of every first call)."""

    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        (table, request), *_ = RequestItems.items()
        keys = [key["pk"]["S"] for key in request["Keys"]]
        if len(keys) > 100:
            raise AssertionError("BatchGetItem takes 100 keys at most")
        first_call = len(keys) > 1
        self.calls.append(len(keys))
        answered, left = (keys[:-1], keys[-1:]) if first_call else (keys, [])
        response: dict[str, Any] = {"Responses": {table: [self.items[k] for k in answered if k in self.items]}}
        if left:
            response["UnprocessedKeys"] = {table: {**request, "Keys": [{"pk": {"S": k}} for k in left]}}
        return response


def test_counters_sum_every_shard_past_a_batch_reads_100_keys() -> None:
    # Given 128 counter shards of a tenant, each holding one completed job (and one other tenant's shard)
    items = {f"acme#{shard}": {"pk": {"S": f"acme#{shard}"}, "completed": {"N": "1"}} for shard in range(128)}
    items["other#0"] = {"pk": {"S": "other#0"}, "completed": {"N": "1000"}}
    client = CounterTable(items)
    repo = DynamoJobsRepository(
        client, "jobs", "stats", stats_shards=128, sweep_shards=1, listing_shards=1, throughput_shards=1
    )
    # When the tenant's counters are read
    totals = repo.counters("acme")
    # Then every shard counts once, read 100 keys at a time, left-over keys asked again
    assert totals["completed"] == 128
    assert max(client.calls) == 100 and sum(1 for n in client.calls if n > 1) == 2


def test_throughput_sums_each_minutes_shards() -> None:
    # Given two minutes of per-minute buckets over 40 shards (80 keys; 3 minutes asked = 120 keys)
    minutes = ["2026-12-06T09:00Z", "2026-12-06T09:01Z", "2026-12-06T09:02Z"]
    items = {
        f"acme#m#{minute}#{shard}": {"pk": {"S": f"acme#m#{minute}#{shard}"}, "failed": {"N": str(n + 1)}}
        for n, minute in enumerate(minutes[:2])
        for shard in range(40)
    }
    repo = DynamoJobsRepository(
        CounterTable(items), "jobs", "stats", stats_shards=1, sweep_shards=1, listing_shards=1, throughput_shards=40
    )
    # When the three minutes are read
    counts = repo.throughput("acme", minutes)
    # Then each minute sums its own shards
    assert {minute: counts[minute]["failed"] for minute in minutes} == {minutes[0]: 40, minutes[1]: 80, minutes[2]: 0}
