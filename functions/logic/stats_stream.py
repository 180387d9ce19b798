"""The stats aggregator's logic: a batch of the jobs table's stream records becomes counter deltas, applied once.

Counting from the stream instead of in each record write halves every record write (no transaction) and removes
the counter write itself. Lambda hands a shard's records over in order, one batch at a time (parallelization factor
1), and re-delivers a failed batch whole; so exactness needs each stats item to know which of a stream shard's
records it already has. The tumbling window is only there because it is what makes Lambda tell the function which
shard a batch comes from.

The shape: every stats item (a tenant's counters, a tenant's minute) keeps, per stream shard, the last sequence
number applied to it. A batch's deltas are summed per item and each item gets ONE conditional UpdateItem: add the
deltas and move its entry to the batch's last record touching it, if its entry is before the batch's first record
touching it. A shard always writes the same item of a tenant, so a delivery that comes again meets its own entry:

- redelivered whole: the condition fails on every item already done (DynamoDB bills the refused write one unit, as
  it would the write), the rest are applied: a batch that crashed after some items completes exactly;
- redelivered differently cut (never seen, but nothing relies on it): the refusal returns the item as it is
  (``ReturnValuesOnConditionCheckFailure``, no read units), and only the records after its entry are sent again;
- two stream shards on one item (a tenant's jobs live in many partitions; a shard splits): each has its own entry,
  and ``ADD`` is commutative;
- an entry left by a shard gone for good (shards roll over every few hours, records live 24 h) is removed by a later
  write to that item once it is older than a day (dal/jobs_repository/stream.py), so items stay under 1 KB.

The cost, measured by bench/cost.py: at light traffic (a batch of one record) one write unit per item the record
touches and no read (a created job and a start: one item each; a completion or failure: its counters and its
minute); the earlier shape paid a consistent read of a per-shard watermark and a transaction (2 units an item) of
the watermark and the items, every invocation: 14 write and 3 read units a job against 4 write units now. At busy
traffic the writes are per batch and item either way; the watermark's read and write are gone and the items' units
halve. What it gives up: a batch is no longer applied all-or-nothing, which nothing needs (a partly applied batch is
completed by the redelivery, and a reader sees counts that were true a moment ago, as the stream's lag already
makes them).

Why entries are top-level attributes (``seq#<shard>``) and not one map attribute ``applied.<shard>``: DynamoDB
cannot ``SET`` a path inside a map that does not exist yet ("the document path provided in the update expression is
invalid for update"), and ``SET applied = if_not_exists(applied, :empty), applied.#shard = :seq`` is refused as two
overlapping paths; a map would take a second, creating write at each new item (every new minute). Top-level
attributes need nothing first. Sequence numbers are compared as numbers: zero-padded to one width (40 digits, more
than a DynamoDB number holds), text order is numeric order.

What one change counts is ``count_change``'s rule.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from functions.dal.jobs_repository import (
    ENQUEUED_COUNTER,
    THROUGHPUT_COUNTERS,
    StatsItem,
    StatusChange,
    StreamDeltas,
    minute_key,
)
from functions.logic import cost as job_cost
from functions.models.errors import ConcurrentUpdate

# Item writes of one batch in flight at once.
ITEM_WRITERS = 10


class StatsStore(Protocol):
    def add_once(
        self, stream_shard: str, item: StatsItem, first: str, last: str, deltas: dict[str, int], now_s: int
    ) -> str | None: ...


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


# One record's deltas for one item: (sequence number, deltas).
Touch = tuple[str, dict[str, int]]


def apply_stream_batch(
    store: StatsStore, stream_shard: str, records: Sequence[tuple[str, StatusChange | None]], now_s: int
) -> int:
    """Apply a batch of (sequence number, change or None) in stream order; returns the changes counted now (those an
    earlier delivery applied are skipped)."""
    touches: dict[StatsItem, list[Touch]] = {}
    for sequence, change in records:
        if change is None:
            continue
        one = StreamDeltas(counters={}, throughput={})
        count_change(one, change)
        for item, deltas in one.by_item().items():
            touches.setdefault(item, []).append((sequence, deltas))
    items = list(touches.items())
    if len(items) <= 1:
        applied = [_apply_to_item(store, stream_shard, item, item_touches, now_s) for item, item_touches in items]
    else:
        # The items are independent: written at once, a busy batch of many tenants takes about one write's time (a
        # stream shard is handed one batch at a time). An error fails the batch once the others are done.
        with ThreadPoolExecutor(max_workers=min(ITEM_WRITERS, len(items)), thread_name_prefix="stats") as pool:
            futures = [
                pool.submit(
                    contextvars.copy_context().run, _apply_to_item, store, stream_shard, item, item_touches, now_s
                )
                for item, item_touches in items
            ]
        applied = [future.result() for future in futures]
    # Every counted change moves its tenant's counters: those are the changes counted now.
    return sum(count for (item, _), count in zip(items, applied, strict=True) if item.minute is None)


def _apply_to_item(store: StatsStore, stream_shard: str, item: StatsItem, touches: list[Touch], now_s: int) -> int:
    """Add the touches the item does not have yet, in one write (two if the item has part of them); returns how many
    were added now."""
    pending = touches
    while pending:
        deltas: dict[str, int] = {}
        for _, one in pending:
            for name, delta in one.items():
                deltas[name] = deltas.get(name, 0) + delta
        # Written even when they cancel out (a job retried and started again): the entry still moves past them.
        seen = store.add_once(stream_shard, item, pending[0][0], pending[-1][0], deltas, now_s)
        if seen is None:
            return len(pending)
        # The item has this shard's records up to ``seen`` (at least the first pending one): send the rest again.
        rest = [(sequence, one) for sequence, one in pending if sequence > seen]
        if len(rest) == len(pending):
            raise ConcurrentUpdate(f"{item} refused records after the {stream_shard} entry it reports ({seen})")
        pending = rest
    return 0
