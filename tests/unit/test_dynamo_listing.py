"""DynamoJobsRepository's listing (functions/dal/jobs_repository/listing.py): its cursors, and paging across shards
over a stub of the index and the table (no AWS involved)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.dal.jobs_repository import DynamoJobsRepository, InvalidCursor
from functions.dal.jobs_repository.listing import _decode_cursor, _encode_cursor
from functions.models.job import Job, JobStatus
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
def test_a_garbage_cursor_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        _decode_cursor(cursor, "by-status", "tenant-a#pending")


def test_another_tenants_cursor_is_an_invalid_cursor() -> None:
    with pytest.raises(InvalidCursor):
        _decode_cursor(_cursor_for("tenant-b#pending"), "by-status", "tenant-a#pending")


def test_a_cursor_of_another_listing_of_the_same_tenant_is_an_invalid_cursor() -> None:
    # Given a cursor from the failed listing, used on the pending listing
    with pytest.raises(InvalidCursor):
        _decode_cursor(_cursor_for("tenant-a#failed"), "by-status", "tenant-a#pending")


def test_a_cursor_of_another_index_is_an_invalid_cursor() -> None:
    # Given a cursor of the by-type index whose partition text happens to equal a by-status partition's
    with pytest.raises(InvalidCursor):
        _decode_cursor(_cursor_for("tenant-a#pending", index="by-type"), "by-status", "tenant-a#pending")


def test_a_deeply_nested_cursor_is_an_invalid_cursor_not_a_crash() -> None:
    with pytest.raises(InvalidCursor):
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
    # Given four pending jobs of a tenant, whose records say: one has started since, one is gone
    repo = _repo()
    jobs = _jobs(clock, 4)
    index_items = [repo._to_item(job) for job in jobs]
    moved_on = repo._to_item(jobs[1].model_copy(update={"status": JobStatus.PROCESSING}))
    client = ShardedIndex([index_items[0], index_items[3], moved_on])
    repo._ddb = client

    # When the pending jobs are listed
    page = repo.list_page(jobs[0].tenant, JobStatus.PENDING, None, limit=10, cursor=None)

    # Then the page holds the two that are still pending, newest first, the left-over key read again
    assert [job.id for job in page.jobs] == [jobs[3].id, jobs[0].id]
    assert client.batch_calls == 2
    assert page.next_cursor is None
    # And every shard's partition of the tenant was asked, none twice (an unfinished status has no index entries)
    asked = sorted((q["IndexName"], q["ExpressionAttributeValues"][":p"]["S"]) for q in client.queries)
    assert asked == sorted(("by-tenant", f"tenant-a#{shard}") for shard in range(SHARDS))
    assert all("tenantStatus" not in item for item in index_items)


def test_only_failed_and_cancelled_are_listed_from_the_status_index(clock: FakeClock) -> None:
    # Given a tenant's jobs: two failed ones among pending ones
    repo = _repo()
    jobs = [
        job.model_copy(update={"status": JobStatus.FAILED if n in (1, 3) else JobStatus.PENDING})
        for n, job in enumerate(_jobs(clock, 6))
    ]
    client = ShardedIndex([repo._to_item(job) for job in jobs])
    repo._ddb = client

    # When the failed jobs are listed
    page = repo.list_page("tenant-a", JobStatus.FAILED, None, limit=10, cursor=None)

    # Then the status index's partitions of "failed" were asked, and only the failed jobs' records were read
    assert [job.id for job in page.jobs] == [jobs[3].id, jobs[1].id]
    assert {q["IndexName"] for q in client.queries} == {"by-status"}
    assert sum(client.keys_read) == 3  # the two, and the key the fake leaves unprocessed once


def test_completed_jobs_are_listed_by_walking_the_tenants_index(clock: FakeClock) -> None:
    # Given a tenant's jobs: completed ones among failed ones; completing wrote no status entry
    repo = _repo()
    jobs = [
        job.model_copy(update={"status": JobStatus.COMPLETED if n % 2 else JobStatus.FAILED})
        for n, job in enumerate(_jobs(clock, 6))
    ]
    items = [repo._to_item(job) for job in jobs]
    assert [("tenantStatus" in item) for item in items] == [True, False] * 3
    client = ShardedIndex(items)
    repo._ddb = client

    # When the completed jobs are listed
    page = repo.list_page("tenant-a", JobStatus.COMPLETED, None, limit=10, cursor=None)

    # Then the tenant's partitions were walked (no status index query), and only the completed jobs came back,
    # newest first
    assert [job.id for job in page.jobs] == [jobs[5].id, jobs[3].id, jobs[1].id]
    assert {q["IndexName"] for q in client.queries} == {"by-tenant"}
    assert page.next_cursor is None


def test_a_sparse_status_listing_examines_a_bounded_number_of_entries_per_page(clock: FakeClock) -> None:
    # Given one processing job behind 25 newer pending ones (listed from the tenant's partition), and a budget of 10
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


def test_a_type_listing_filters_the_tenants_entries_and_reads_only_that_types_records(clock: FakeClock) -> None:
    # Given a tenant's jobs of two types, the rare one behind many of the other, and a budget of 10 entries a page
    repo = _repo(listing_shards=2, read_budget=10)
    jobs = [
        job.model_copy(update={"type": "fetch" if n in (0, 2) else "simulate"})
        for n, job in enumerate(_jobs(clock, 25))
    ]
    client = ShardedIndex([repo._to_item(job) for job in jobs])
    repo._ddb = client

    # When the rare type is listed page by page
    pages, cursor = [], None
    for _ in range(10):
        page = repo.list_page("tenant-a", None, "fetch", limit=5, cursor=cursor)
        pages.append([job.id for job in page.jobs])
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then the tenant's index was read (there is no type index), a page examined at most its budget, and only the
    # rare type's records were read
    assert [job_id for page_ids in pages for job_id in page_ids] == [jobs[2].id, jobs[0].id]
    assert len(pages) == 3 and pages[:2] == [[], []]
    assert {q["IndexName"] for q in client.queries} == {"by-tenant"}
    assert sum(client.keys_read) == 3  # the two, and the key the fake leaves unprocessed once
