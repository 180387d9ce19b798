"""What every part of ``DynamoJobsRepository`` shares: its tables and shard counts, the item mapping, and the two
calls that turn DynamoDB's errors into ours (a write, conditional or transactional; a batched read), and one
item read by key (``read_item``, also used by the batch store)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository.items import ItemLayout, from_item, to_item
from functions.models.errors import ConcurrentUpdate, StorageError
from functions.models.job import Job


def read_item(client: Any, table: str, pk: str) -> dict[str, Any] | None:
    """One item by its key, strongly consistent (what was just written is seen); None when there is none."""
    try:
        response = client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"DynamoDB read failed: {exc}") from exc
    item: dict[str, Any] | None = response.get("Item")
    return item


class DynamoTables:
    def __init__(
        self,
        client: Any,
        jobs_table: str,
        stats_table: str,
        stats_shards: int,
        sweep_shards: int,
        *,
        listing_shards: int,
        throughput_shards: int,
        retention_seconds: int = 0,
        listing_read_budget: int = 1_000,
    ) -> None:
        self._ddb = client
        self._jobs_table = jobs_table
        self._stats_table = stats_table
        self._stats_shards = stats_shards
        self._sweep_shards = sweep_shards
        self._listing_shards = listing_shards
        self._throughput_shards = throughput_shards
        # Final jobs carry ``expiresAt`` (DynamoDB TTL) this long after they ended; 0 keeps them forever.
        self._retention_seconds = retention_seconds
        # A page stops after examining this many index entries and answers what it found with a cursor, so a
        # sparse filter (one processing job among a backlog of pending ones) costs bounded reads per request.
        self._listing_read_budget = listing_read_budget
        self._layout = ItemLayout(listing_shards, sweep_shards, retention_seconds)

    def _to_item(self, job: Job) -> dict[str, Any]:
        return to_item(job, self._layout)

    _from_item = staticmethod(from_item)

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            if len(items) == 1:
                self._single_write(items[0])
            else:
                self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if code == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in reasons:
                raise ConcurrentUpdate("the job changed since it was read") from exc
            raise StorageError(f"DynamoDB write failed: {code}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc

    def _single_write(self, item: dict[str, Any]) -> None:
        # A write without a status change needs no transaction (half the write cost).
        put = item["Put"]
        self._ddb.put_item(**put)

    def _batch_read(self, table: str, keys: list[dict[str, Any]], consistent: bool) -> Iterator[dict[str, Any]]:
        """The items under ``keys`` (BatchGetItem takes 100 keys a call; unprocessed keys are asked again)."""
        try:
            for start in range(0, len(keys), 100):
                request: dict[str, Any] = {table: {"Keys": keys[start : start + 100], "ConsistentRead": consistent}}
                while request:
                    response = self._ddb.batch_get_item(RequestItems=request)
                    yield from response.get("Responses", {}).get(table, [])
                    request = response.get("UnprocessedKeys") or {}
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB read failed: {exc}") from exc
