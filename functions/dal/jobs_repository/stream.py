"""The stats table's write side: the stats aggregator applies the jobs table's stream to the counters.

Each stream record is applied exactly once (a watermark per stream shard moves in the same transaction as the
counters), so the counters are exact however the writers interleave or crash.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from functions.dal.jobs_repository.stats import (
    THROUGHPUT_RETENTION_SECONDS,
    counter_key,
    minute_epoch,
    throughput_key,
)
from functions.dal.jobs_repository.table import DynamoTables, read_item


@dataclass(frozen=True)
class StatusChange:
    """What one record of the jobs table's stream means for the counters: a job record's status before and after
    (``before`` None: created; ``after`` None: removed, e.g. expired), with the new record's ``updatedAt``."""

    tenant: str
    before: str | None
    after: str | None
    at: str
    # What logic/cost.py sums per minute: the job's type and its record's ``cost`` once final (not part of what
    # a change is, for comparisons).
    job_type: str = field(default="", compare=False)
    cost: dict[str, Any] | None = field(default=None, compare=False)
    cost_before: dict[str, Any] | None = field(default=None, compare=False)  # a retried job's earlier runs


@dataclass
class StreamDeltas:
    """Counter deltas per tenant, and completions/failures per (tenant, minute key)."""

    counters: dict[str, dict[str, int]]
    throughput: dict[tuple[str, str], dict[str, int]]

    def item_count(self) -> int:
        return len(self.counters) + len(self.throughput)


# Sequence numbers of DynamoDB streams are decimal strings of up to 40 digits.
_SEQUENCE_DIGITS = 48


def stream_sequence(record: dict[str, Any]) -> str:
    """A stream record's sequence number, zero-padded so that text order is numeric order (as the watermark keeps)."""
    return str(record["dynamodb"]["SequenceNumber"]).zfill(_SEQUENCE_DIGITS)


def stream_change(record: dict[str, Any]) -> StatusChange | None:
    """The status change a DynamoDB stream record (Lambda's event shape) carries; None for another item (a batch,
    an idempotency claim) or a write that kept the status."""
    data = record.get("dynamodb", {})
    old, new = data.get("OldImage") or {}, data.get("NewImage") or {}
    image = new or old
    if "type" not in image or "status" not in image or "tenant" not in image:
        return None  # not a job record
    before = old["status"]["S"] if "status" in old else None
    after = new["status"]["S"] if "status" in new else None
    if before == after:
        return None
    return StatusChange(
        tenant=image["tenant"]["S"],
        before=before,
        after=after,
        at=image["updatedAt"]["S"] if "updatedAt" in image else "",
        job_type=image["type"]["S"],
        cost=json.loads(new["costJson"]["S"]) if "costJson" in new else None,
        cost_before=json.loads(old["costJson"]["S"]) if "costJson" in old and _counted_before(old) else None,
    )


def _counted_before(image: dict[str, Any]) -> bool:
    """The record completed or failed before (it was retried since): its cost then was counted then."""
    history = image.get("history", {}).get("L", [])
    return any(entry.get("M", {}).get("status", {}).get("S") in ("completed", "failed") for entry in history)


def _watermark_key(stream_shard: str) -> str:
    return f"stream#{stream_shard}"


class StatsStream(DynamoTables):
    def stream_watermark(self, stream_shard: str) -> str | None:
        """The last stream sequence number applied from this stream shard (zero-padded), None before the first."""
        item = read_item(self._ddb, self._stats_table, _watermark_key(stream_shard))
        return str(item["seq"]["S"]) if item else None

    def apply_stream_deltas(
        self, stream_shard: str, previous: str | None, upto: str, deltas: StreamDeltas, now_s: int
    ) -> None:
        """Add ``deltas`` to the counters and move the shard's watermark from ``previous`` to ``upto``, in one
        transaction conditional on the watermark: records already applied can never be applied again
        (``ConcurrentUpdate`` if the watermark moved since it was read)."""
        watermark: dict[str, Any] = {
            "Put": {
                "TableName": self._stats_table,
                "Item": {"pk": {"S": _watermark_key(stream_shard)}, "seq": {"S": upto}},
                "ConditionExpression": "attribute_not_exists(pk)" if previous is None else "seq = :previous",
            }
        }
        if previous is not None:
            watermark["Put"]["ExpressionAttributeValues"] = {":previous": {"S": previous}}
        items = [watermark]
        items += [
            self._counter_update(tenant, counts) for tenant, counts in deltas.counters.items() if any(counts.values())
        ]
        items += [
            self._throughput_update(tenant, minute, counts, now_s)
            for (tenant, minute), counts in deltas.throughput.items()
        ]
        self._transact(items)

    def _counter_update(self, tenant: str, deltas: dict[str, int]) -> dict[str, Any]:
        # A random shard per write keeps any single counter item far below DynamoDB's per-key write limit.
        shard = random.randrange(self._stats_shards)
        return self._stats_add(counter_key(tenant, shard), deltas)

    def _throughput_update(self, tenant: str, minute: str, counts: dict[str, int], now_s: int) -> dict[str, Any]:
        # Per-minute completions and failures for the dashboard's chart, sharded like the counters; the items
        # expire after THROUGHPUT_RETENTION_SECONDS (DynamoDB TTL on ``expiresAt``).
        shard = random.randrange(self._throughput_shards)
        expires = max(minute_epoch(minute), now_s) + THROUGHPUT_RETENTION_SECONDS
        return self._stats_add(throughput_key(tenant, minute, str(shard)), counts, expires)

    def _stats_add(self, key: str, deltas: dict[str, int], expires: int | None = None) -> dict[str, Any]:
        """The transaction item adding ``deltas`` to the stats item ``key`` (and setting its expiry once, if given)."""
        names = {f"#c{i}": name for i, name in enumerate(deltas)}
        values: dict[str, Any] = {f":d{i}": {"N": str(delta)} for i, delta in enumerate(deltas.values())}
        expression = "ADD " + ", ".join(f"#c{i} :d{i}" for i in range(len(deltas)))
        if expires is not None:
            values[":expires"] = {"N": str(expires)}
            expression += " SET expiresAt = if_not_exists(expiresAt, :expires)"
        return {
            "Update": {
                "TableName": self._stats_table,
                "Key": {"pk": {"S": key}},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
