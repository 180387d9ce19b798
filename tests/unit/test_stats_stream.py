"""The stats aggregator's logic: stream records -> counter deltas, each record applied exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.dal.jobs_repository import StatsItem, StatusChange, StreamDeltas, stream_change, stream_sequence
from functions.handlers.stats_stream import apply_event
from functions.logic.stats_stream import apply_stream_batch, count_change
from functions.models.errors import ConcurrentUpdate, JobsError, StorageError

AT = "2026-12-06T10:15:42.123Z"


def change(before: str | None, after: str | None, tenant: str = "t1", at: str = AT) -> StatusChange:
    return StatusChange(tenant=tenant, before=before, after=after, at=at)


def fold(changes: list[StatusChange]) -> StreamDeltas:
    deltas = StreamDeltas(counters={}, throughput={})
    for one in changes:
        count_change(deltas, one)
    return deltas


def seq(n: int) -> str:
    return str(n).zfill(40)


@dataclass
class FakeStatsStore:
    """Applies deltas to plain dicts with the DAL's rule: an item takes a shard's records once, in order."""

    applied: dict[tuple[StatsItem, str], str] = field(default_factory=dict)  # (item, stream shard) -> last sequence
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    throughput: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    writes: list[tuple[StatsItem, str, str]] = field(default_factory=list)  # every write asked: (item, first, last)
    crash_on: StatsItem | None = None  # the item whose write fails (a Lambda crash mid-batch)

    def add_once(
        self, stream_shard: str, item: StatsItem, first: str, last: str, deltas: dict[str, int], now_s: int
    ) -> str | None:
        if item == self.crash_on:
            raise StorageError("the function died mid-batch")
        self.writes.append((item, first, last))
        seen = self.applied.get((item, stream_shard))
        if seen is not None and seen >= first:
            return seen
        self.applied[(item, stream_shard)] = last
        if item.minute is None:
            target = self.counters.setdefault(item.tenant, {})
        else:
            target = self.throughput.setdefault((item.tenant, item.minute), {})
        for name, delta in deltas.items():
            target[name] = target.get(name, 0) + delta
        return None


def test_a_created_job_is_enqueued_and_counted_in_its_status() -> None:
    deltas = fold([change(None, "pending"), change(None, "scheduled")])
    assert deltas.counters == {"t1": {"enqueued": 2, "pending": 1, "scheduled": 1}}
    assert deltas.throughput == {}


def test_a_status_change_moves_one_and_a_final_one_counts_in_its_minute() -> None:
    deltas = fold([change("pending", "processing"), change("processing", "completed")])
    assert deltas.counters == {"t1": {"pending": -1, "processing": 0, "completed": 1}}
    assert deltas.throughput == {("t1", "2026-12-06T10:15Z"): {"completed": 1}}


def test_an_expired_record_changes_no_count() -> None:
    assert fold([change("completed", None)]) == StreamDeltas(counters={}, throughput={})


def test_a_batch_is_one_write_per_item_and_its_redelivery_counts_once() -> None:
    # Given a store and a batch of four records of one tenant, one of them not a status change, one a completion
    store = FakeStatsStore()
    batch = [
        (seq(1), change(None, "pending")),
        (seq(2), None),
        (seq(3), change("pending", "processing")),
        (seq(4), change("processing", "completed")),
    ]
    # When it is applied, then delivered again whole (Lambda retries a failed batch as it was)
    first = apply_stream_batch(store, "shard-1", batch, now_s=0)
    again = apply_stream_batch(store, "shard-1", batch, now_s=0)
    # Then its changes were counted once: one write per item (the counters, the minute), each refused the second time
    assert (first, again) == (3, 0)
    assert store.counters == {"t1": {"enqueued": 1, "pending": 0, "processing": 0, "completed": 1}}
    assert store.throughput == {("t1", "2026-12-06T10:15Z"): {"completed": 1}}
    counters, minute = StatsItem("t1"), StatsItem("t1", "2026-12-06T10:15Z")
    assert sorted(store.writes, key=str) == sorted([(counters, seq(1), seq(4)), (minute, seq(4), seq(4))] * 2, key=str)
    assert store.applied == {(counters, "shard-1"): seq(4), (minute, "shard-1"): seq(4)}


def test_a_batch_that_crashed_part_way_completes_exactly_on_redelivery() -> None:
    # Given a batch of two tenants' records whose delivery dies writing the second tenant's counters
    store = FakeStatsStore(crash_on=StatsItem("t2"))
    batch = [
        (seq(1), change(None, "pending", tenant="t1")),
        (seq(2), change(None, "pending", tenant="t2")),
        (seq(3), change("pending", "processing", tenant="t1")),
    ]
    with pytest.raises(StorageError):
        apply_stream_batch(store, "s", batch, now_s=0)
    assert store.counters == {"t1": {"enqueued": 1, "pending": 0, "processing": 1}}
    # When Lambda delivers the batch again
    store.crash_on = None
    counted = apply_stream_batch(store, "s", batch, now_s=0)
    # Then the item already written is left as it is and the other gets its change: every change counted once
    assert counted == 1
    assert store.counters == {
        "t1": {"enqueued": 1, "pending": 0, "processing": 1},
        "t2": {"enqueued": 1, "pending": 1},
    }


def test_a_batch_overlapping_what_was_applied_counts_only_the_new_records() -> None:
    # Given an item that has the shard's first record
    store = FakeStatsStore()
    apply_stream_batch(store, "s", [(seq(1), change(None, "pending"))], now_s=0)
    # When a batch cut differently brings that record again with a new one
    later = [(seq(1), change(None, "pending")), (seq(2), change("pending", "processing"))]
    # Then the item refuses the whole, and takes the part after what it has
    assert apply_stream_batch(store, "s", later, now_s=0) == 1
    assert store.counters["t1"] == {"enqueued": 1, "pending": 0, "processing": 1}
    assert [(first, last) for _, first, last in store.writes] == [(seq(1), seq(1)), (seq(1), seq(2)), (seq(2), seq(2))]


def test_two_stream_shards_count_into_one_tenant_independently() -> None:
    # Given one tenant's jobs in two stream shards whose sequence numbers interleave (they are per shard)
    store = FakeStatsStore()
    apply_stream_batch(store, "a", [(seq(5), change(None, "pending")), (seq(9), change(None, "pending"))], now_s=0)
    apply_stream_batch(store, "b", [(seq(7), change(None, "pending"))], now_s=0)
    # When shard b's batch comes again and shard a moves on past it
    apply_stream_batch(store, "b", [(seq(7), change(None, "pending"))], now_s=0)
    apply_stream_batch(store, "a", [(seq(10), change("pending", "processing"))], now_s=0)
    # Then each shard's records counted once
    assert store.counters["t1"] == {"enqueued": 3, "pending": 2, "processing": 1}
    assert store.applied == {(StatsItem("t1"), "a"): seq(10), (StatsItem("t1"), "b"): seq(7)}


def test_changes_that_cancel_out_still_move_the_items_entry() -> None:
    store = FakeStatsStore()
    batch = [(seq(1), change("processing", "pending")), (seq(2), change("pending", "processing"))]
    assert apply_stream_batch(store, "s", batch, now_s=0) == 2
    assert store.applied == {(StatsItem("t1"), "s"): seq(2)}
    assert store.counters == {"t1": {"processing": 0, "pending": 0}}


def test_a_batch_without_job_changes_writes_nothing() -> None:
    store = FakeStatsStore()
    assert apply_stream_batch(store, "s", [(seq(1), None), (seq(2), change("completed", None))], now_s=0) == 0
    assert store.writes == []


def test_a_batch_of_many_tenants_writes_each_item_once() -> None:
    # Given a busy batch: 50 tenants, each with a job created and one completed
    store = FakeStatsStore()
    records = [
        (seq(2 * i + n), change(*moves, tenant=f"t{i}"))
        for i in range(50)
        for n, moves in enumerate([(None, "pending"), ("processing", "completed")])
    ]
    # When it is applied, and again
    assert apply_stream_batch(store, "s", records, now_s=0) == 100
    assert apply_stream_batch(store, "s", records, now_s=0) == 0
    # Then every tenant's counters and minute were written once a delivery, and counted once
    assert len(store.writes) == 2 * 100
    assert all(
        store.counters[f"t{i}"] == {"enqueued": 1, "pending": 1, "processing": -1, "completed": 1} for i in range(50)
    )
    assert all(store.throughput[(f"t{i}", "2026-12-06T10:15Z")] == {"completed": 1} for i in range(50))


def test_an_item_that_refuses_records_it_reports_not_having_fails_the_batch() -> None:
    class Lying(FakeStatsStore):
        def add_once(
            self, stream_shard: str, item: StatsItem, first: str, last: str, deltas: dict[str, int], now_s: int
        ) -> str | None:
            return seq(0)  # refused, yet before the first record: retrying would never end

    with pytest.raises(ConcurrentUpdate):
        apply_stream_batch(Lying(), "s", [(seq(1), change(None, "pending"))], now_s=0)


def _image(**attributes: str) -> dict[str, Any]:
    return {name: {"S": value} for name, value in attributes.items()}


def test_stream_records_map_to_status_changes() -> None:
    job = {"tenant": "t1", "type": "simulate", "updatedAt": AT}
    modify = {
        "dynamodb": {
            "SequenceNumber": "1100000000017454423009",
            "OldImage": _image(**job, status="pending"),
            "NewImage": _image(**job, status="processing"),
        }
    }
    assert stream_change(modify) == StatusChange(tenant="t1", before="pending", after="processing", at=AT)
    assert stream_sequence(modify) == "1100000000017454423009".zfill(40)
    insert = {"dynamodb": {"SequenceNumber": "7", "NewImage": _image(**job, status="pending")}}
    assert stream_change(insert) == change(None, "pending")
    # A write that kept the status, a batch item, an idempotency claim: nothing to count
    same = {
        "dynamodb": {
            "SequenceNumber": "8",
            "OldImage": modify["dynamodb"]["NewImage"],
            "NewImage": modify["dynamodb"]["NewImage"],
        }
    }
    batch_item = {"dynamodb": {"SequenceNumber": "9", "NewImage": {"pk": {"S": "t1#batch#b"}, "finished": {"N": "1"}}}}
    assert stream_change(same) is None and stream_change(batch_item) is None


def test_an_event_without_a_shard_id_is_refused() -> None:
    with pytest.raises(JobsError, match="tumbling window"):
        apply_event(FakeStatsStore(), {"Records": []})
