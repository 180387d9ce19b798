"""A job as a jobs-table item and back (functions/dal/jobs_repository/items.py and keys.py; no AWS involved)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.dal.jobs_repository import key_shard, sweep_shard
from functions.dal.jobs_repository.items import ItemLayout, from_item, to_item
from functions.models.job import HistoryEntry, Job, JobStatus
from tests.unit.fakes import FakeClock, make_job

SHARDS = 4
LAYOUT = ItemLayout(listing_shards=SHARDS, sweep_shards=SHARDS)


def _item(job: Job) -> dict[str, Any]:
    return to_item(job, LAYOUT)


def _full_job(clock: FakeClock) -> Job:
    return make_job(
        clock,
        payload={"target": "caf\u00e9 \u2615 \U0001f600", "ratio": 0.1, "nested": {"x": [1.5, -2.25e-10, None, True]}},
        status=JobStatus.RETRYING,
        attempts=2,
        max_attempts=7,
        timeout_seconds=120,
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


def test_a_job_with_every_field_survives_the_item_round_trip(clock: FakeClock) -> None:
    # Given a job with nested floats and unicode, history entries with and without attempt/error, all options set
    job = _full_job(clock)
    # When it is mapped to an item and back
    back = from_item(_item(job))
    # Then nothing is lost, including the fields excluded from the API (tenant, version, lease, sweep mark)
    assert back == job
    assert (back.tenant, back.version, back.lease_until_ms, back.sweep_at) == (
        job.tenant,
        12,
        job.lease_until_ms,
        job.sweep_at,
    )
    assert back.payload["nested"]["x"][1] == -2.25e-10


def test_a_minimal_job_round_trips_with_its_optional_fields_absent(clock: FakeClock) -> None:
    # Given a new pending job with no optional field set
    job = make_job(clock, payload={})
    # When it is mapped
    item = _item(job)
    # Then the optional attributes are not written at all, and reading gives the same job
    for absent in (
        "runAt",
        "startedAt",
        "completedAt",
        "error",
        "resultJson",
        "leaseUntil",
        "nextAttemptAt",
        "timeoutSeconds",
        "sweepAt",
        "sweepShard",
    ):
        assert absent not in item
    assert from_item(item) == job


@pytest.mark.parametrize("result", [0, "", False, [], {}])
def test_a_falsy_result_is_kept(clock: FakeClock, result: Any) -> None:
    job = make_job(clock, status=JobStatus.COMPLETED, result=result)
    assert from_item(_item(job)).result == result


def test_the_item_carries_the_keys_of_every_listing_index(clock: FakeClock) -> None:
    job = make_job(clock, tenant="acme", status=JobStatus.FAILED, job_type="simulate")
    item = _item(job)
    shard = key_shard(job.id, SHARDS)
    assert item["pk"] == {"S": f"acme#{job.id}"}
    assert item["createdKey"] == {"S": f"{job.created_at}#{job.id}"}
    assert item["tenantKey"] == {"S": f"acme#{shard}"}
    assert item["tenantStatus"] == {"S": f"acme#failed#{shard}"}
    assert "tenantType" not in item  # a type is filtered on the listing indexes' entries, not indexed
    assert item["tenant"] == {"S": "acme"}


@pytest.mark.parametrize(
    ("status", "partition"),
    [
        (JobStatus.SCHEDULED, None),
        (JobStatus.PENDING, None),
        (JobStatus.PROCESSING, None),
        (JobStatus.RETRYING, None),
        (JobStatus.WAITING, None),
        (JobStatus.COMPLETED, None),  # most jobs end completed: listed by walking the by-tenant index (keys.py)
        (JobStatus.FAILED, "failed"),
        (JobStatus.CANCELLED, "cancelled"),
    ],
)
def test_only_a_failed_or_cancelled_job_has_a_status_index_entry(
    clock: FakeClock, status: JobStatus, partition: str | None
) -> None:
    job = make_job(clock, tenant="acme", status=status)
    expected = None if partition is None else {"S": f"acme#{partition}#{key_shard(job.id, SHARDS)}"}
    assert _item(job).get("tenantStatus") == expected


def test_scheduling_claiming_and_retrying_a_job_write_no_index_entry_and_failing_it_one(clock: FakeClock) -> None:
    # Given a job's records as it waits for its time, is claimed, fails an attempt, is claimed again and fails
    job = make_job(clock, status=JobStatus.SCHEDULED)
    path = [
        JobStatus.SCHEDULED,
        JobStatus.PENDING,
        JobStatus.PROCESSING,
        JobStatus.RETRYING,
        JobStatus.PROCESSING,
        JobStatus.FAILED,
    ]
    items = [_item(job.model_copy(update={"status": status, "version": n})) for n, status in enumerate(path)]
    # Then every listing key stays put until the final status (an index key that changes is a delete and a put),
    # which adds the one status entry and removes none
    index_keys = [{name: item[name] for name in ("tenantKey", "tenantStatus") if name in item} for item in items]
    assert all(keys == index_keys[0] for keys in index_keys[:-1])
    assert "tenantStatus" not in index_keys[0]
    assert index_keys[-1] == {**index_keys[0], "tenantStatus": items[-1]["tenantStatus"]}


def test_a_jobs_listing_shard_is_stable_across_its_writes(clock: FakeClock) -> None:
    # Given a job, and the same job later in another status
    job = make_job(clock, job_id="00000000-0000-4000-8000-0000000000aa")
    later = job.model_copy(update={"status": JobStatus.CANCELLED, "version": 5})
    # Then both items name the same shard in every listing key (its final status's entry is in that shard too)
    before, after = _item(job), _item(later)
    assert before["tenantKey"] == after["tenantKey"]
    assert before["tenantKey"]["S"].rsplit("#", 1)[1] == after["tenantStatus"]["S"].rsplit("#", 1)[1]


def test_listing_shards_spread_a_tenants_jobs_evenly() -> None:
    counts = [0] * 32
    for n in range(3200):
        counts[key_shard(f"00000000-0000-4000-8000-{n:012d}", 32)] += 1
    # Every shard gets its share within 40 % (a binomial with mean 100: far outside would mean a skewed hash)
    assert min(counts) > 60 and max(counts) < 140


def test_a_sweep_mark_puts_the_job_in_the_sparse_sweep_index(clock: FakeClock) -> None:
    # Given a job with a sweep mark, and the same job without
    marked = make_job(clock, sweep_at=clock.iso(120))
    unmarked = marked.model_copy(update={"sweep_at": None})
    # Then only the marked one has sweepShard/sweepAt, the shard derived from the id
    item = _item(marked)
    assert item["sweepAt"] == {"S": clock.iso(120)}
    assert item["sweepShard"] == {"S": sweep_shard(marked.id, SHARDS)}
    assert "sweepAt" not in _item(unmarked)
    assert "sweepShard" not in _item(unmarked)


def test_sweep_shards_are_stable_and_spread() -> None:
    shards = [sweep_shard(f"job-{n}", SHARDS) for n in range(400)]
    assert set(shards) == {"0", "1", "2", "3"}
    assert min(shards.count(s) for s in set(shards)) > 50
    assert sweep_shard("job-1", SHARDS) == sweep_shard("job-1", SHARDS)


def test_numbers_are_written_as_dynamodb_numbers(clock: FakeClock) -> None:
    item = _item(_full_job(clock))
    for name in ("priority", "attempts", "maxAttempts", "version", "leaseUntil", "nextAttemptAt"):
        assert set(item[name]) == {"N"}
        int(item[name]["N"])
    assert item["history"]["L"][3]["M"] == {
        "status": {"S": "retrying"},
        "at": {"S": clock.iso(61)},
        "attempt": {"N": "1"},
        "error": {"S": "boom"},
    }
