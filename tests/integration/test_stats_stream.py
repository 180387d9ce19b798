"""The stats aggregator on moto: each stream record applied once per stats item, with one conditional UpdateItem per
item and no read; redeliveries, crashes part way, several stream shards and the pruning of gone shards' entries."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import boto3
import pytest

from functions.dal.jobs_repository import DynamoJobsRepository, StatsItem, StatusChange, stream_slot
from functions.dal.jobs_repository.stream import STALE_ENTRY_SECONDS, applied_attribute
from functions.handlers.stats_stream import apply_event
from functions.logic.stats_stream import apply_stream_batch
from functions.models.errors import StorageError
from functions.settings import Settings

AT = "2026-12-06T10:15:42.123Z"
MINUTE = "2026-12-06T10:15Z"
NOW_S = 1_800_000_000
# Lambda's shard ids look like this one (moto's).
SHARD = "shardId-00000001541626099285-f35f62ef"

_tenants = itertools.count(1)


@pytest.fixture
def calls(local_tables: Settings) -> Counter[str]:
    """The DynamoDB operations the repository's client makes."""
    return Counter()


@pytest.fixture
def repo(local_tables: Settings, calls: Counter[str]) -> DynamoJobsRepository:
    client = boto3.client("dynamodb")
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    return DynamoJobsRepository.from_settings(client, local_tables)


@pytest.fixture
def tenant() -> str:
    return f"stats-{next(_tenants)}"


def seq(n: int) -> str:
    return str(1100000000017454423009 + n).zfill(40)


def created(tenant: str) -> StatusChange:
    return StatusChange(tenant=tenant, before=None, after="pending", at=AT, job_type="message")


def moved(tenant: str, before: str, after: str) -> StatusChange:
    return StatusChange(tenant=tenant, before=before, after=after, at=AT, job_type="message")


def counters(repo: DynamoJobsRepository, tenant: str) -> dict[str, int]:
    return {name: value for name, value in repo.counters(tenant).items() if value}


def stored(repo: DynamoJobsRepository, key: str) -> dict[str, Any]:
    item: dict[str, Any] = repo._ddb.get_item(TableName=repo._stats_table, Key={"pk": {"S": key}})["Item"]
    return item


def counter_item(repo: DynamoJobsRepository, tenant: str, shard: str = SHARD) -> dict[str, Any]:
    return stored(repo, f"{tenant}#{stream_slot(shard, repo._stats_shards)}")


def test_a_batch_of_one_is_one_conditional_update_per_item_and_no_read(
    repo: DynamoJobsRepository, calls: Counter[str], tenant: str
) -> None:
    # Given a job's three stream records, each delivered alone (light traffic)
    records = [
        (seq(1), created(tenant)),
        (seq(2), moved(tenant, "pending", "processing")),
        (seq(3), moved(tenant, "processing", "completed")),
    ]
    # When each is applied
    for record in records:
        apply_stream_batch(repo, SHARD, [record], NOW_S)
    # Then the creation and the start wrote the counters once each, the completion the counters and its minute:
    # four UpdateItems, no read, no transaction
    assert calls == Counter({"UpdateItem": 4})
    assert counters(repo, tenant) == {"enqueued": 1, "completed": 1}
    assert repo.throughput(tenant, [MINUTE]) == {MINUTE: {"completed": 1, "failed": 0}}
    # And each item holds this shard's last record applied to it
    assert counter_item(repo, tenant)[applied_attribute(SHARD)]["L"][0] == {"S": seq(3)}


def test_a_redelivered_batch_counts_once(repo: DynamoJobsRepository, tenant: str) -> None:
    # Given a Lambda stream event of two jobs' records
    event = {
        "shardId": SHARD,
        "Records": [
            _record(seq(10), None, {"status": "pending"}, tenant),
            _record(seq(11), {"status": "pending"}, {"status": "processing"}, tenant),
            _record(seq(12), None, {"status": "pending"}, tenant),
        ],
    }
    # When it is applied, then delivered again whole
    first, again = apply_event(repo, event), apply_event(repo, event)
    # Then its three changes counted once
    assert (first, again) == (3, 0)
    assert counters(repo, tenant) == {"enqueued": 2, "pending": 1, "processing": 1}


def test_a_batch_that_crashed_after_one_item_completes_exactly_on_redelivery(
    repo: DynamoJobsRepository, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch touching a tenant's counters and its minute, whose delivery dies after the counters were written
    batch = [(seq(20), moved(tenant, "processing", "completed")), (seq(21), moved(tenant, "processing", "failed"))]
    written = repo.add_once

    def dying(stream_shard: str, item: StatsItem, *args: Any) -> str | None:
        if item.minute is not None:
            raise StorageError("the function timed out")
        return written(stream_shard, item, *args)

    monkeypatch.setattr(repo, "add_once", dying)
    with pytest.raises(StorageError):
        apply_stream_batch(repo, SHARD, batch, NOW_S)
    assert counters(repo, tenant) == {"processing": -2, "completed": 1, "failed": 1}
    assert repo.throughput(tenant, [MINUTE]) == {MINUTE: {"completed": 0, "failed": 0}}
    # When Lambda delivers it again
    monkeypatch.undo()
    apply_stream_batch(repo, SHARD, batch, NOW_S)
    # Then the counters are left as they were and the minute gets its two: each change counted once
    assert counters(repo, tenant) == {"processing": -2, "completed": 1, "failed": 1}
    assert repo.throughput(tenant, [MINUTE]) == {MINUTE: {"completed": 1, "failed": 1}}


def test_a_batch_cut_differently_counts_only_what_the_item_lacks(repo: DynamoJobsRepository, tenant: str) -> None:
    apply_stream_batch(repo, SHARD, [(seq(30), created(tenant))], NOW_S)
    later = [(seq(30), created(tenant)), (seq(31), moved(tenant, "pending", "processing"))]
    assert apply_stream_batch(repo, SHARD, later, NOW_S) == 1
    assert counters(repo, tenant) == {"enqueued": 1, "processing": 1}


def test_sequence_numbers_compare_as_numbers(repo: DynamoJobsRepository, tenant: str) -> None:
    # "9" sorts after "10" as text: padded to one width they compare as numbers
    short, longer = str(9).zfill(40), str(10).zfill(40)
    apply_stream_batch(repo, SHARD, [(short, created(tenant))], NOW_S)
    assert apply_stream_batch(repo, SHARD, [(longer, moved(tenant, "pending", "processing"))], NOW_S) == 1
    assert counters(repo, tenant) == {"enqueued": 1, "processing": 1}


def _same_slot_shards(count: int, shards: int) -> list[str]:
    """``count`` Lambda-like shard ids that all write the same item of a tenant."""
    candidates = (f"shardId-{1541626099285 + n:020d}-{n:08x}" for n in itertools.count())
    slot = stream_slot(SHARD, shards)
    return list(itertools.islice((s for s in candidates if stream_slot(s, shards) == slot), count))


def test_two_stream_shards_update_one_tenant_item_independently(repo: DynamoJobsRepository, tenant: str) -> None:
    # Given two stream shards writing the same counter item, their sequence numbers interleaved
    a, b = _same_slot_shards(2, repo._stats_shards)
    apply_stream_batch(repo, a, [(seq(40), created(tenant)), (seq(44), created(tenant))], NOW_S)
    apply_stream_batch(repo, b, [(seq(42), created(tenant))], NOW_S)
    # When b's batch comes again and a moves on past it
    apply_stream_batch(repo, b, [(seq(42), created(tenant))], NOW_S)
    apply_stream_batch(repo, a, [(seq(45), moved(tenant, "pending", "processing"))], NOW_S)
    # Then each shard's records counted once, each shard with its own entry on the one item
    assert counters(repo, tenant) == {"enqueued": 3, "pending": 2, "processing": 1}
    item = counter_item(repo, tenant, a)
    assert (item[applied_attribute(a)]["L"][0], item[applied_attribute(b)]["L"][0]) == ({"S": seq(45)}, {"S": seq(42)})


def test_entries_of_gone_shards_are_pruned_and_the_item_stays_small(repo: DynamoJobsRepository, tenant: str) -> None:
    # Given a counter item written by eight stream shards in turn, one every four hours (as shards roll over)
    shards = _same_slot_shards(9, repo._stats_shards)
    for n, shard in enumerate(shards[:8]):
        apply_stream_batch(repo, shard, [(seq(50 + n), created(tenant))], NOW_S + n * 4 * 3600)
    old = counter_item(repo, tenant, shards[0])
    # Then the entries older than a day (and an hour) were removed as later writes found them, the others kept
    now = NOW_S + 7 * 4 * 3600
    kept = {name for name in old if name.startswith("seq#")}
    assert kept == {
        applied_attribute(shard)
        for n, shard in enumerate(shards[:8])
        if now - (NOW_S + n * 4 * 3600) <= STALE_ENTRY_SECONDS
    }
    assert len(kept) < 8
    # And the item, with a day of entries and every counter, is under 1 KB (one write unit)
    assert _item_bytes(old) < 1024
    # And a shard whose entry was pruned long after its records expired counts its new records (none could be old)
    assert apply_stream_batch(repo, shards[0], [(seq(90), created(tenant))], now + 3600) == 1
    assert counters(repo, tenant) == {"enqueued": 9, "pending": 9}


def test_a_fresh_entry_is_not_pruned(repo: DynamoJobsRepository, calls: Counter[str], tenant: str) -> None:
    # Given two shards on one item a little under a day apart
    a, b = _same_slot_shards(2, repo._stats_shards)
    apply_stream_batch(repo, a, [(seq(60), created(tenant))], NOW_S)
    calls.clear()
    apply_stream_batch(repo, b, [(seq(61), created(tenant))], NOW_S + STALE_ENTRY_SECONDS)
    # Then the older one stays (a redelivery of its records may still come), and no pruning write was made
    assert calls == Counter({"UpdateItem": 1})
    assert applied_attribute(a) in counter_item(repo, tenant, a)


def _record(sequence: str, old: dict[str, str] | None, new: dict[str, str], tenant: str) -> dict[str, Any]:
    def image(attributes: dict[str, str]) -> dict[str, Any]:
        job = {"tenant": tenant, "type": "message", "updatedAt": AT, **attributes}
        return {name: {"S": value} for name, value in job.items()}

    data: dict[str, Any] = {"SequenceNumber": sequence.lstrip("0"), "NewImage": image(new)}
    if old is not None:
        data["OldImage"] = image(old)
    return {"eventName": "MODIFY" if old else "INSERT", "dynamodb": data}


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers about a byte per two digits, plus one)."""

    def size(value: dict[str, Any]) -> int:
        (kind, inner), *_ = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner.lstrip("-").replace(".", "")) // 2 + 1
        if kind == "L":
            return 3 + sum(1 + size(element) for element in inner)
        raise AssertionError(f"unexpected attribute type {kind}")

    return sum(len(name.encode()) + size(value) for name, value in item.items())
