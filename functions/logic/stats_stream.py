"""The stats aggregator's logic: a batch of the jobs table's stream records becomes counter deltas, applied once.

Counting from the stream instead of in each record write halves every record write (no transaction) and removes
the counter write itself. Exactness comes from a watermark per stream shard: the last sequence number applied,
moved in the same transaction as the deltas and conditional on its previous value. Lambda hands a shard's records
over in order, one batch at a time (parallelization factor 1), and re-delivers a failed batch whole: records at or
below the watermark were applied by an earlier delivery and are skipped. The tumbling window is only there because
it is what makes Lambda tell the function which shard a batch comes from.

What one change counts is ``count_change``'s rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from functions.dal.jobs_repository import ENQUEUED_COUNTER, THROUGHPUT_COUNTERS, StatusChange, StreamDeltas, minute_key
from functions.logic import cost as job_cost

# TransactWriteItems takes 100 items: the watermark and at most this many counter items per transaction.
MAX_ITEMS_PER_TRANSACTION = 90


class StatsStore(Protocol):
    def stream_watermark(self, stream_shard: str) -> str | None: ...
    def apply_stream_deltas(
        self, stream_shard: str, previous: str | None, upto: str, deltas: StreamDeltas, now_s: int
    ) -> None: ...


def count_change(deltas: StreamDeltas, change: StatusChange) -> None:
    """Count one change: a created job is ``enqueued`` and one of its status; a status change moves one from the old
    status to the new, and entering ``completed`` or ``failed`` adds one to that minute's throughput. A removed
    (expired) record counts nothing: stats count transitions, not records."""
    if change.after is None:
        return
    counts = deltas.counters.setdefault(change.tenant, {})
    if change.before is None:
        counts[ENQUEUED_COUNTER] = counts.get(ENQUEUED_COUNTER, 0) + 1
    else:
        counts[change.before] = counts.get(change.before, 0) - 1
        if change.after in THROUGHPUT_COUNTERS:
            minute = deltas.throughput.setdefault((change.tenant, minute_key(change.at)), {})
            minute[change.after] = minute.get(change.after, 0) + 1
            job_cost.count_cost(minute, change.job_type, change.cost, change.cost_before)
    counts[change.after] = counts.get(change.after, 0) + 1


def apply_stream_batch(
    store: StatsStore, stream_shard: str, records: Sequence[tuple[str, StatusChange | None]], now_s: int
) -> int:
    """Apply a batch of (sequence number, change or None) in stream order; returns the changes applied now (those
    an earlier delivery applied are skipped). Raises ``ConcurrentUpdate`` if the watermark moved meanwhile."""
    watermark = store.stream_watermark(stream_shard)
    fresh = [(sequence, change) for sequence, change in records if watermark is None or sequence > watermark]
    applied = 0
    chunk = StreamDeltas(counters={}, throughput={})
    for index, (sequence, change) in enumerate(fresh):
        if change is not None:
            count_change(chunk, change)
            applied += 1
        if index == len(fresh) - 1 or chunk.item_count() >= MAX_ITEMS_PER_TRANSACTION:
            store.apply_stream_deltas(stream_shard, watermark, sequence, chunk, now_s)
            watermark, chunk = sequence, StreamDeltas(counters={}, throughput={})
    return applied
