"""The stats table's write side: the stats aggregator applies the jobs table's stream to the counters.

Each stream record is applied exactly once without a read or a transaction: every stats item keeps, per stream shard,
the last sequence number applied to it (``seq#<shard>``: [sequence, when applied]), and the deltas go in one
conditional UpdateItem that also moves that entry. Why this shape, and why top-level attributes instead of one map
of them: logic/stats_stream.py. A stream shard always writes the same item of a tenant (``stream_slot``), so a
delivery that comes again finds its own entry there.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository.stats import (
    THROUGHPUT_RETENTION_SECONDS,
    counter_key,
    minute_epoch,
    throughput_key,
)
from functions.dal.jobs_repository.table import DynamoTables
from functions.models.errors import ConcurrentUpdate, StorageError


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


@dataclass(frozen=True)
class StatsItem:
    """What a delta is added to: a tenant's counters, or (``minute`` set) its completions and failures that minute."""

    tenant: str
    minute: str | None = None


@dataclass
class StreamDeltas:
    """Counter deltas per tenant, and completions/failures per (tenant, minute key)."""

    counters: dict[str, dict[str, int]]
    throughput: dict[tuple[str, str], dict[str, int]]

    def by_item(self) -> dict[StatsItem, dict[str, int]]:
        return {
            **{StatsItem(tenant): counts for tenant, counts in self.counters.items()},
            **{StatsItem(tenant, minute): counts for (tenant, minute), counts in self.throughput.items()},
        }


# Sequence numbers of DynamoDB streams are decimal strings of 21 to 40 digits (the Streams API reference); more digits
# than a DynamoDB number holds (38), so they are kept as strings of one width, where text order is numeric order.
_SEQUENCE_DIGITS = 40
APPLIED_PREFIX = "seq#"
# Stream records are kept 24 h: an entry not moved for longer (plus a margin for clocks) can never see a delivery
# again, since every record it covers was written before it was last moved.
STREAM_RETENTION_SECONDS = 86_400
STALE_ENTRY_SECONDS = STREAM_RETENTION_SECONDS + 3_600


def stream_sequence(record: dict[str, Any]) -> str:
    """A stream record's sequence number, zero-padded so that text order is numeric order (as the items keep it)."""
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


def stream_slot(stream_shard: str, shards: int) -> int:
    """The item (of ``shards``) a stream shard writes for a tenant: always the same one (a stable hash, not Python's
    per-process ``hash``), so a redelivery meets its own entry; shards spread over the items like random picks did."""
    return zlib.crc32(stream_shard.encode()) % shards


def applied_attribute(stream_shard: str) -> str:
    """The item attribute holding what ``stream_shard`` applied to it (Lambda's ids begin with ``shardId-``)."""
    return APPLIED_PREFIX + stream_shard.removeprefix("shardId-")


class StatsStream(DynamoTables):
    def add_once(
        self, stream_shard: str, item: StatsItem, first: str, last: str, deltas: dict[str, int], now_s: int
    ) -> str | None:
        """Add ``deltas`` (the records ``first``..``last`` of ``stream_shard`` that touch ``item``) unless the item
        has records of that shard at or after ``first`` already. Returns None when added, else the last sequence
        number the item has from that shard (a delivery seen before: the caller keeps only what is after it)."""
        key = self._item_key(stream_shard, item)
        changes = {name: delta for name, delta in deltas.items() if delta}
        names = {"#w": applied_attribute(stream_shard), **{f"#c{i}": name for i, name in enumerate(changes)}}
        values: dict[str, Any] = {
            ":first": {"S": first},
            ":w": {"L": [{"S": last}, {"N": str(now_s)}]},
            **{f":d{i}": {"N": str(delta)} for i, delta in enumerate(changes.values())},
        }
        expression = "SET #w = :w"
        if item.minute is not None:
            # Per-minute items expire after THROUGHPUT_RETENTION_SECONDS (DynamoDB TTL on ``expiresAt``).
            values[":expires"] = {"N": str(max(minute_epoch(item.minute), now_s) + THROUGHPUT_RETENTION_SECONDS)}
            expression += ", expiresAt = if_not_exists(expiresAt, :expires)"
        if changes:
            expression += " ADD " + ", ".join(f"#c{i} :d{i}" for i in range(len(changes)))
        try:
            response = self._ddb.update_item(
                TableName=self._stats_table,
                Key={"pk": {"S": key}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#w) OR #w[0] < :first",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                # Both free of read units: the item after the write (for pruning), or as it was when the condition
                # failed (what this shard applied to it).
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code != "ConditionalCheckFailedException":
                raise StorageError(f"DynamoDB write failed: {code}") from exc
            entry = (exc.response.get("Item") or {}).get(names["#w"])
            if entry is None:
                raise ConcurrentUpdate(f"{key} refused {stream_shard}'s deltas without an entry of it") from exc
            return str(entry["L"][0]["S"])
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        self._prune(key, response.get("Attributes", {}), now_s)
        return None

    def _item_key(self, stream_shard: str, item: StatsItem) -> str:
        # Spread over shards so that no item takes a tenant's whole traffic; a stream shard keeps to one of them.
        if item.minute is None:
            return counter_key(item.tenant, stream_slot(stream_shard, self._stats_shards))
        return throughput_key(item.tenant, item.minute, str(stream_slot(stream_shard, self._throughput_shards)))

    def _prune(self, key: str, item: dict[str, Any], now_s: int) -> None:
        """Remove the entries of stream shards gone for good (kept past STALE_ENTRY_SECONDS), so an item touched by
        shard after shard stays small (one write unit a KB). Best effort: one not removed now is seen next time."""
        cutoff = now_s - STALE_ENTRY_SECONDS
        stale = [
            name for name, value in item.items() if name.startswith(APPLIED_PREFIX) and int(value["L"][1]["N"]) < cutoff
        ]
        if not stale:
            return
        names = {f"#p{i}": name for i, name in enumerate(stale)}
        try:
            self._ddb.update_item(
                TableName=self._stats_table,
                Key={"pk": {"S": key}},
                UpdateExpression="REMOVE " + ", ".join(names),
                # Only if still stale: an entry moved meanwhile is in use again.
                ConditionExpression=" AND ".join(f"{name}[1] < :cutoff" for name in names),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":cutoff": {"N": str(cutoff)}},
            )
        except (ClientError, BotoCoreError):
            return
