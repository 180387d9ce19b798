"""The stats table's read side: per-tenant counters and per-minute completions/failures.

The stats aggregator writes them from the jobs table's stream (stream.py). No item takes a tenant's whole traffic:
counters are spread over ``stats_shards`` items, the per-minute throughput over ``throughput_shards``; a read sums
the shards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository.table import DynamoTables
from functions.models.job import JobStatus

STATUS_COUNTERS = tuple(status.value for status in JobStatus)
ENQUEUED_COUNTER = "enqueued"

THROUGHPUT_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
THROUGHPUT_COUNTERS = tuple(sorted(status.value for status in THROUGHPUT_STATUSES))
THROUGHPUT_RETENTION_SECONDS = 2 * 86_400

# The per-minute items of a tenant: "<tenant>#m#<minute>#<shard>", and one summary of a settled minute's shards.
SETTLED_SUMMARY = "all"


def minute_key(at: str) -> str:
    """``2026-11-23T14:05:59.123Z`` -> ``2026-11-23T14:05Z``."""
    return at[:16] + "Z"


def counter_key(tenant: str, shard: int) -> str:
    return f"{tenant}#{shard}"


def throughput_key(tenant: str, minute: str, shard: str) -> str:
    return f"{tenant}#m#{minute}#{shard}"


def minute_epoch(minute: str) -> int:
    return int(datetime.fromisoformat(minute[:-1] + ":00+00:00").timestamp())


def _throughput_minute(tenant: str, item: dict[str, Any]) -> str:
    return str(item["pk"]["S"][len(tenant) + 3 :].rsplit("#", 1)[0])


class Counters(DynamoTables):
    def counters(self, tenant: str) -> dict[str, int]:
        keys = [{"pk": {"S": counter_key(tenant, shard)}} for shard in range(self._stats_shards)]
        totals = {name: 0 for name in (ENQUEUED_COUNTER, *STATUS_COUNTERS)}
        # Eventually consistent (half the read units): the counters already trail the records by the stream, and
        # the dashboard reads all the shards every 1.5 s.
        for item in self._batch_read(self._stats_table, keys, consistent=False):
            for name in totals:
                if name in item:
                    totals[name] += int(item[name]["N"])
        return totals

    def throughput(
        self, tenant: str, minutes: list[str], settled_before: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Completions and failures per minute key (``minute_key``), summed over the shards.

        A minute before ``settled_before`` takes no more writes; its shards are summed once into one summary item
        that later reads take instead (a 60-minute chart reads ~60 summaries and the open minutes' shards, not
        60 x ``throughput_shards`` items). The summary is a cache of the shards, which stay until they expire."""
        totals = {minute: dict.fromkeys(THROUGHPUT_COUNTERS, 0) for minute in minutes}
        settled = [minute for minute in minutes if settled_before is not None and minute < settled_before]
        summarized: set[str] = set()
        summary_keys = [{"pk": {"S": throughput_key(tenant, minute, SETTLED_SUMMARY)}} for minute in settled]
        for item in self._batch_read(self._stats_table, summary_keys, consistent=False):
            minute = _throughput_minute(tenant, item)
            summarized.add(minute)
            totals[minute] = {name: int(item[name]["N"]) if name in item else 0 for name in THROUGHPUT_COUNTERS}
        shard_keys = [
            {"pk": {"S": throughput_key(tenant, minute, str(shard))}}
            for minute in minutes
            if minute not in summarized
            for shard in range(self._throughput_shards)
        ]
        for item in self._batch_read(self._stats_table, shard_keys, consistent=False):
            minute = _throughput_minute(tenant, item)
            for name in THROUGHPUT_COUNTERS:
                if name in item and minute in totals:
                    totals[minute][name] += int(item[name]["N"])
        self._summarize(tenant, {minute: totals[minute] for minute in settled if minute not in summarized})
        return totals

    def minute_items(self, tenant: str, minutes: list[str]) -> list[dict[str, Any]]:
        """Every shard item of the given minutes (their cost sums, logic/cost.py, are not in the summaries)."""
        keys = [
            {"pk": {"S": throughput_key(tenant, minute, str(shard))}}
            for minute in minutes
            for shard in range(self._throughput_shards)
        ]
        return list(self._batch_read(self._stats_table, keys, consistent=False))

    def _summarize(self, tenant: str, counts: dict[str, dict[str, int]]) -> None:
        # Best effort: a summary not written now is written by the next read (the shards are still there).
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": throughput_key(tenant, minute, SETTLED_SUMMARY)},
                        **{name: {"N": str(count)} for name, count in minute_counts.items()},
                        "expiresAt": {"N": str(minute_epoch(minute) + THROUGHPUT_RETENTION_SECONDS)},
                    }
                }
            }
            for minute, minute_counts in counts.items()
        ]
        try:
            for start in range(0, len(items), 25):  # BatchWriteItem takes 25 items at most
                self._ddb.batch_write_item(RequestItems={self._stats_table: items[start : start + 25]})
        except (ClientError, BotoCoreError):
            return
