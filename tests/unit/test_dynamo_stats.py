"""DynamoJobsRepository's counter reads (functions/dal/jobs_repository/stats.py) over many shards, on a stub table."""

from __future__ import annotations

from typing import Any

from functions.dal.jobs_repository import DynamoJobsRepository

# --- counters over many shards ---


class CounterTable:
    """BatchGetItem as DynamoDB answers it: at most 100 keys a call (more is a ValidationException), and a call may
    leave keys unprocessed (here: the last key of every first call)."""

    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        (table, request), *_ = RequestItems.items()
        keys = [key["pk"]["S"] for key in request["Keys"]]
        if len(keys) > 100:
            raise AssertionError("BatchGetItem takes 100 keys at most")
        first_call = len(keys) > 1
        self.calls.append(len(keys))
        answered, left = (keys[:-1], keys[-1:]) if first_call else (keys, [])
        response: dict[str, Any] = {"Responses": {table: [self.items[k] for k in answered if k in self.items]}}
        if left:
            response["UnprocessedKeys"] = {table: {**request, "Keys": [{"pk": {"S": k}} for k in left]}}
        return response


def test_counters_sum_every_shard_past_a_batch_reads_100_keys() -> None:
    # Given 128 counter shards of a tenant, each holding one completed job (and one other tenant's shard)
    items = {f"acme#{shard}": {"pk": {"S": f"acme#{shard}"}, "completed": {"N": "1"}} for shard in range(128)}
    items["other#0"] = {"pk": {"S": "other#0"}, "completed": {"N": "1000"}}
    client = CounterTable(items)
    repo = DynamoJobsRepository(
        client, "jobs", "stats", stats_shards=128, sweep_shards=1, listing_shards=1, throughput_shards=1
    )
    # When the tenant's counters are read
    totals = repo.counters("acme")
    # Then every shard counts once, read 100 keys at a time, left-over keys asked again
    assert totals["completed"] == 128
    assert max(client.calls) == 100 and sum(1 for n in client.calls if n > 1) == 2


def test_throughput_sums_each_minutes_shards() -> None:
    # Given two minutes of per-minute buckets over 40 shards (80 keys; 3 minutes asked = 120 keys)
    minutes = ["2026-12-06T09:00Z", "2026-12-06T09:01Z", "2026-12-06T09:02Z"]
    items = {
        f"acme#m#{minute}#{shard}": {"pk": {"S": f"acme#m#{minute}#{shard}"}, "failed": {"N": str(n + 1)}}
        for n, minute in enumerate(minutes[:2])
        for shard in range(40)
    }
    repo = DynamoJobsRepository(
        CounterTable(items), "jobs", "stats", stats_shards=1, sweep_shards=1, listing_shards=1, throughput_shards=40
    )
    # When the three minutes are read
    counts = repo.throughput("acme", minutes)
    # Then each minute sums its own shards
    assert {minute: counts[minute]["failed"] for minute in minutes} == {minutes[0]: 40, minutes[1]: 80, minutes[2]: 0}
