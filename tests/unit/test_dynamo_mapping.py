"""DynamoJobsRepository's pure parts: the item mapping and the listing cursor (no AWS involved)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.dal.jobs_repository import DynamoJobsRepository, _decode_cursor, _encode_cursor, sweep_shard
from functions.models.errors import InvalidQuery
from functions.models.job import HistoryEntry, Job, JobStatus
from tests.unit.fakes import FakeClock, make_job

SHARDS = 4


@pytest.fixture
def ddb() -> DynamoJobsRepository:
    return DynamoJobsRepository(
        client=None, jobs_table="jobs", stats_table="stats", stats_shards=8, sweep_shards=SHARDS
    )


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
    assert item["pk"] == {"S": f"acme#{job.id}"}
    assert item["createdKey"] == {"S": f"{job.created_at}#{job.id}"}
    assert item["tenantStatus"] == {"S": "acme#failed"}
    assert item["tenantType"] == {"S": "acme#simulate"}
    assert item["tenant"] == {"S": "acme"}


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

STATUS_KEYS = ("tenantStatus", "createdKey")


def _cursor_for(tenant: str, status: str = "pending") -> str:
    return _encode_cursor(
        {"pk": f"{tenant}#job-1", "tenantStatus": f"{tenant}#{status}", "createdKey": "2026-01-01T00:00:00.000Z#job-1"}
    )


def test_a_cursor_round_trips_to_the_exclusive_start_key() -> None:
    # Given the last key of a page of tenant-a's pending jobs
    cursor = _cursor_for("tenant-a")
    # Then the cursor is URL-safe, unpadded text that decodes to DynamoDB's key form
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert _decode_cursor(cursor, *STATUS_KEYS, "tenant-a#pending") == {
        "pk": {"S": "tenant-a#job-1"},
        "tenantStatus": {"S": "tenant-a#pending"},
        "createdKey": {"S": "2026-01-01T00:00:00.000Z#job-1"},
    }


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
        _b64(json.dumps({"pk": "tenant-a#job-1"}).encode()),
        _b64(json.dumps({"pk": 1, "tenantStatus": "tenant-a#pending", "createdKey": "x"}).encode()),
    ],
)
def test_a_garbage_cursor_is_invalid_query(cursor: str) -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(cursor, *STATUS_KEYS, "tenant-a#pending")


def test_another_tenants_cursor_is_invalid_query() -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-b"), *STATUS_KEYS, "tenant-a#pending")


def test_a_cursor_of_another_listing_of_the_same_tenant_is_invalid_query() -> None:
    # Given a cursor from the failed listing, used on the pending listing
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-a", "failed"), *STATUS_KEYS, "tenant-a#pending")


def test_a_cursor_with_another_index_keys_is_invalid_query() -> None:
    # Given a cursor of the by-status index, used on the by-tenant index
    with pytest.raises(InvalidQuery):
        _decode_cursor(_cursor_for("tenant-a"), "tenant", "createdKey", "tenant-a")


def test_a_cursor_whose_record_key_belongs_to_another_tenant_is_invalid_query() -> None:
    forged = _encode_cursor(
        {"pk": "tenant-b#job-1", "tenantStatus": "tenant-a#pending", "createdKey": "2026-01-01T00:00:00.000Z#job-1"}
    )
    with pytest.raises(InvalidQuery):
        _decode_cursor(forged, *STATUS_KEYS, "tenant-a#pending")


def test_a_deeply_nested_cursor_is_invalid_query_not_a_crash() -> None:
    with pytest.raises(InvalidQuery):
        _decode_cursor(_b64(b"[" * 1000), *STATUS_KEYS, "tenant-a#pending")


class ListingClient:
    """A DynamoDB client for one listing: the index answers keys, BatchGetItem the records (one key left over once)."""

    def __init__(self, index_items: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> None:
        self.index_items = index_items
        self.records = records
        self.batch_calls = 0

    def query(self, **request: Any) -> dict[str, Any]:
        return {"Items": self.index_items[: request["Limit"]]}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_calls += 1
        keys = [key["pk"]["S"] for key in RequestItems["jobs"]["Keys"]]
        answered, unprocessed = (keys[:-1], keys[-1:]) if self.batch_calls == 1 else (keys, [])
        response: dict[str, Any] = {"Responses": {"jobs": [self.records[k] for k in answered if k in self.records]}}
        if unprocessed:
            response["UnprocessedKeys"] = {"jobs": {"Keys": [{"pk": {"S": k}} for k in unprocessed]}}
        return response


def test_a_listing_reads_its_records_by_key_in_index_order_and_drops_those_that_moved_on(clock: FakeClock) -> None:
    # Given an index page of four pending jobs (newest first), whose records say: one has started since, one is
    # gone, and BatchGetItem leaves one key unprocessed on its first call
    repo = DynamoJobsRepository(client=None, jobs_table="jobs", stats_table="stats", stats_shards=8, sweep_shards=4)
    jobs = [make_job(clock, job_id=f"00000000-0000-4000-8000-00000000000{n}") for n in range(4)]
    items = {job.id: repo._to_item(job) for job in jobs}
    moved_on = repo._to_item(jobs[1].model_copy(update={"status": JobStatus.PROCESSING}))
    index_items = [{name: items[job.id][name] for name in ("pk", "tenantStatus", "createdKey", "type")} for job in jobs]
    records = {items[job.id]["pk"]["S"]: items[job.id] for job in (jobs[0], jobs[3])}
    records[moved_on["pk"]["S"]] = moved_on
    client = ListingClient(index_items, records)
    repo._ddb = client

    # When the pending jobs are listed
    page = repo.list_page(jobs[0].tenant, JobStatus.PENDING, None, limit=10, cursor=None)

    # Then the page holds the two that are still pending, in the index's order, the left-over key read again
    assert [job.id for job in page.jobs] == [jobs[0].id, jobs[3].id]
    assert client.batch_calls == 2
    assert page.next_cursor is None
