"""The stats aggregator's logic: stream records -> counter deltas, each record applied exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.dal.jobs_repository import StatusChange, StreamDeltas, stream_change, stream_sequence
from functions.handlers.stats_stream import apply_event
from functions.logic.stats_stream import MAX_ITEMS_PER_TRANSACTION, apply_stream_batch, count_change
from functions.models.errors import ConcurrentUpdate, JobsError

AT = "2026-12-06T10:15:42.123Z"


def change(before: str | None, after: str | None, tenant: str = "t1", at: str = AT) -> StatusChange:
    return StatusChange(tenant=tenant, before=before, after=after, at=at)


def fold(changes: list[StatusChange]) -> StreamDeltas:
    deltas = StreamDeltas(counters={}, throughput={})
    for one in changes:
        count_change(deltas, one)
    return deltas


def seq(n: int) -> str:
    return str(n).zfill(48)


@dataclass
class FakeStatsStore:
    """Applies deltas to plain dicts, with the DAL's watermark rule (ConcurrentUpdate when it moved)."""

    watermarks: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    throughput: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    transactions: list[int] = field(default_factory=list)  # items per transaction, the watermark included

    def stream_watermark(self, stream_shard: str) -> str | None:
        return self.watermarks.get(stream_shard)

    def apply_stream_deltas(
        self, stream_shard: str, previous: str | None, upto: str, deltas: StreamDeltas, now_s: int
    ) -> None:
        if self.watermarks.get(stream_shard) != previous:
            raise ConcurrentUpdate("the watermark moved")
        assert deltas.item_count() + 1 <= 100, "TransactWriteItems takes at most 100 items"
        self.transactions.append(deltas.item_count() + 1)
        self.watermarks[stream_shard] = upto
        for tenant, counts in deltas.counters.items():
            target = self.counters.setdefault(tenant, {})
            for name, delta in counts.items():
                target[name] = target.get(name, 0) + delta
        for key, counts in deltas.throughput.items():
            target = self.throughput.setdefault(key, {})
            for name, delta in counts.items():
                target[name] = target.get(name, 0) + delta


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


def test_a_batch_is_applied_and_its_redelivery_is_skipped() -> None:
    # Given a store and a batch of three records, one of them not a status change
    store = FakeStatsStore()
    batch = [(seq(1), change(None, "pending")), (seq(2), None), (seq(3), change("pending", "processing"))]
    # When it is applied, then delivered again (Lambda retries a batch whole)
    first = apply_stream_batch(store, "shard-1", batch, now_s=0)
    again = apply_stream_batch(store, "shard-1", batch, now_s=0)
    # Then its changes were counted once, and the watermark is at its last record
    assert (first, again) == (2, 0)
    assert store.counters == {"t1": {"enqueued": 1, "pending": 0, "processing": 1}}
    assert store.watermarks == {"shard-1": seq(3)}


def test_a_batch_overlapping_what_was_applied_counts_only_the_new_records() -> None:
    store = FakeStatsStore()
    apply_stream_batch(store, "s", [(seq(1), change(None, "pending"))], now_s=0)
    later = [(seq(1), change(None, "pending")), (seq(2), change("pending", "processing"))]
    assert apply_stream_batch(store, "s", later, now_s=0) == 1
    assert store.counters["t1"] == {"enqueued": 1, "pending": 0, "processing": 1}


def test_watermarks_are_per_shard() -> None:
    store = FakeStatsStore()
    record = (seq(5), change(None, "pending"))
    apply_stream_batch(store, "a", [record], now_s=0)
    apply_stream_batch(store, "b", [record], now_s=0)
    assert store.counters["t1"]["enqueued"] == 2


def test_many_tenants_are_split_into_transactions_of_at_most_100_items() -> None:
    # Given a batch touching more counter items than one transaction may hold
    store = FakeStatsStore()
    records = [(seq(i), change("processing", "completed", tenant=f"t{i}")) for i in range(1, 201)]
    # When it is applied
    applied = apply_stream_batch(store, "s", records, now_s=0)
    # Then every change counted once, in several transactions, each within the limit
    assert applied == 200
    assert len(store.transactions) > 1 and max(store.transactions) <= MAX_ITEMS_PER_TRANSACTION + 3
    assert all(store.counters[f"t{i}"] == {"processing": -1, "completed": 1} for i in range(1, 201))
    assert store.watermarks["s"] == seq(200)


def test_a_watermark_moved_by_someone_else_fails_the_batch() -> None:
    class Racing(FakeStatsStore):
        def stream_watermark(self, stream_shard: str) -> str | None:
            return None  # read before another delivery moved it

    store = Racing(watermarks={"s": "0" * 48})
    with pytest.raises(ConcurrentUpdate):
        apply_stream_batch(store, "s", [(seq(1), change(None, "pending"))], now_s=0)
    assert store.counters == {}


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
    assert stream_sequence(modify) == "1100000000017454423009".zfill(48)
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
