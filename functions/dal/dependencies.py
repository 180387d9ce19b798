"""Job dependencies in DynamoDB: one edge item per (dependency, dependent) pair, and a marker per dependency that has
any, in the dependencies table; the dependent's ``waitingOn`` counter lives on its job record.

- An edge: pk ``<tenant>#<dependency>#<shard>`` (the dependent's shard among ``shards``), sk the dependent's id.
  1,000 jobs created at once on one dependency spread over the shards' keys instead of one (DynamoDB allows 1,000
  writes/s per key).
- A marker: pk ``<tenant>#<dependency>``, sk ``#``, with ``shards``: the set of shards that hold its edges. The
  stream consumer reads the markers of a batch's final jobs (one consistent batched read) and queries only the
  shards a marker names, so a job nobody depends on costs no query when it ends, and one with a few dependents one
  or two. The set grows by an atomic ``ADD`` (two creators racing both land), only when a creation finds its shard
  missing: at most ``shards`` writes per dependency, however many dependents it gets. It is never written on the
  dependency's own record: a write there would move the record's version and make the dependency's running
  attempt lose its outcome.

An edge is resolved exactly once: the transaction that sets its ``resolvedAt`` (only if missing) also decrements the
dependent's ``waitingOn`` and moves its version (only while it is ``waiting``). Resolved edges expire a day later;
edges whose dependent no longer waits are deleted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository import key_shard, record_key
from functions.dal.jobs_repository.items import expired, from_item, is_job_item
from functions.dal.limits import batch_get
from functions.models.errors import StorageError
from functions.models.job import Job, JobStatus

MARKER_SORT_KEY = "#"
# A resolved edge is kept this long (for a look while debugging), then DynamoDB's TTL removes it.
RESOLVED_EDGE_TTL_SECONDS = 86_400
_BATCH_WRITE_MAX = 25
_BATCH_GET_MAX = 100
_ROUNDS = 8
_TRANSACTION_ATTEMPTS = 6


class Resolution(Enum):
    RESOLVED = "resolved"  # this call resolved the edge and counted it on the dependent
    ALREADY = "already"  # the edge was resolved before (an earlier delivery, or the other path)
    NOT_WAITING = "not-waiting"  # the dependent is not waiting (cancelled, released) or not written yet


@dataclass(frozen=True)
class Edge:
    dependency_id: str
    dependent_id: str
    resolved: bool


def edge_key(tenant: str, dependency_id: str, dependent_id: str, shards: int) -> dict[str, Any]:
    # The dependent's shard is a hash of its id: every writer and reader of an edge computes the same key.
    return {
        "pk": {"S": f"{tenant}#{dependency_id}#{key_shard(dependent_id, shards)}"},
        "sk": {"S": dependent_id},
    }


def marker_key(tenant: str, dependency_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{tenant}#{dependency_id}"}, "sk": {"S": MARKER_SORT_KEY}}


class DynamoDependencyStore:
    def __init__(
        self,
        client: Any,
        dependencies_table: str,
        jobs_table: str,
        shards: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ddb = client
        self._table = dependencies_table
        self._jobs_table = jobs_table
        self._shards = shards
        self._sleep = sleep

    # --- creating a dependent ---

    def jobs(self, tenant: str, job_ids: Sequence[str]) -> dict[str, Job]:
        """The tenant's records of ``job_ids`` that exist (consistent: a job just created is seen), by id."""
        keys = [record_key(tenant, job_id) for job_id in job_ids if "#" not in job_id]
        found: dict[str, Job] = {}
        for item in batch_get(self._ddb, self._jobs_table, keys, "dependencies"):
            if is_job_item(item) and not expired(item):
                job = from_item(item)
                found[job.id] = job
        return found

    def markers(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], frozenset[int]]:
        """The shards holding edges of each (tenant, job id) that has dependents, read consistently."""
        wanted = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], frozenset[int]] = {}
        for item in self._batch_get([marker_key(tenant, job_id) for tenant, job_id in wanted]):
            tenant, _, job_id = item["pk"]["S"].partition("#")
            found[(tenant, job_id)] = frozenset(int(shard) for shard in item.get("shards", {}).get("NS", []))
        return found

    def add_edges(self, tenant: str, dependent_id: str, dependency_ids: Sequence[str], now: str) -> None:
        """Write the dependent's edges, then add its shard to the markers that lack it. Writing them again (a
        retried request) changes nothing. The markers are read first, so a dependency with 1,000 dependents has
        its marker written at most once per shard, not 1,000 times."""
        shard = key_shard(dependent_id, self._shards)
        marked = self.markers((tenant, job_id) for job_id in dependency_ids)
        items = [
            {**edge_key(tenant, dependency_id, dependent_id, self._shards), "createdAt": {"S": now}}
            for dependency_id in dependency_ids
        ]
        self._write_all([{"PutRequest": {"Item": item}} for item in items])
        for dependency_id in dependency_ids:
            if shard not in marked.get((tenant, dependency_id), frozenset()):
                self._add_shard(tenant, dependency_id, shard, now)

    def _add_shard(self, tenant: str, dependency_id: str, shard: int, now: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=marker_key(tenant, dependency_id),
                UpdateExpression="ADD shards :shard SET createdAt = if_not_exists(createdAt, :now)",
                ExpressionAttributeValues={":shard": {"NS": [str(shard)]}, ":now": {"S": now}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB UpdateItem (dependency marker) failed: {exc}") from exc

    def _write_all(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), _BATCH_WRITE_MAX):
            pending: dict[str, Any] = {self._table: requests[start : start + _BATCH_WRITE_MAX]}
            for attempt in range(_ROUNDS):
                try:
                    response = self._ddb.batch_write_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageError(f"DynamoDB BatchWriteItem (dependencies) failed: {exc}") from exc
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                self._sleep(0.02 * 2**attempt)
            else:
                raise StorageError("DynamoDB BatchWriteItem (dependencies) left items unprocessed")

    # --- settling ---

    def dependents(self, tenant: str, dependency_id: str, shards: Iterable[int]) -> list[Edge]:
        """Every edge from ``dependency_id`` in ``shards`` (its marker's): a consistent query per shard (an edge
        just written is seen)."""
        edges: list[Edge] = []
        for shard in sorted(shards):
            request: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"{tenant}#{dependency_id}#{shard}"}},
                "ProjectionExpression": "sk, resolvedAt",
                "ConsistentRead": True,
            }
            while True:
                try:
                    response = self._ddb.query(**request)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageError(f"DynamoDB Query (dependents) failed: {exc}") from exc
                edges += [
                    Edge(dependency_id, item["sk"]["S"], "resolvedAt" in item) for item in response.get("Items", [])
                ]
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return edges

    def edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> list[Edge]:
        """The edges of the (dependency, dependent) ``pairs`` that exist, read consistently 100 at a time."""
        keys = [edge_key(tenant, dependency_id, dependent_id, self._shards) for dependency_id, dependent_id in pairs]
        return [
            Edge(item["pk"]["S"][len(tenant) + 1 :].rpartition("#")[0], item["sk"]["S"], "resolvedAt" in item)
            for item in self._batch_get(keys)
        ]

    def resolve(self, tenant: str, dependency_id: str, dependent_id: str, now: str) -> Resolution:
        """Resolve the edge and count it on the dependent, together or not at all (see the module's docstring)."""
        edge = edge_key(tenant, dependency_id, dependent_id, self._shards)
        items = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": edge,
                    "UpdateExpression": "SET resolvedAt = :now, expiresAt = :expires",
                    "ConditionExpression": "attribute_exists(sk) AND attribute_not_exists(resolvedAt)",
                    "ExpressionAttributeValues": {":now": {"S": now}, ":expires": _expiry()},
                }
            },
            {
                "Update": {
                    "TableName": self._jobs_table,
                    "Key": {"pk": {"S": record_key(tenant, dependent_id)}},
                    # The version moves: a writer holding the record as it was must read it again.
                    "UpdateExpression": "SET waitingOn = waitingOn - :one ADD version :one",
                    "ConditionExpression": "#status = :waiting AND waitingOn > :zero",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":one": {"N": "1"},
                        ":zero": {"N": "0"},
                        ":waiting": {"S": JobStatus.WAITING.value},
                    },
                }
            },
        ]
        for attempt in range(_TRANSACTION_ATTEMPTS):
            try:
                self._ddb.transact_write_items(TransactItems=items)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                if code == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                    return Resolution.ALREADY
                if code == "TransactionCanceledException" and reasons[1:2] == ["ConditionalCheckFailed"]:
                    return Resolution.NOT_WAITING
                if code == "TransactionCanceledException" and "TransactionConflict" in reasons:
                    # Another edge of the same dependent at the same instant: back off and try again.
                    self._sleep(random.uniform(0, 0.02 * 2**attempt))
                    continue
                raise StorageError(f"DynamoDB TransactWriteItems (dependency) failed: {code}") from exc
            except BotoCoreError as exc:
                raise StorageError(f"DynamoDB TransactWriteItems (dependency) failed: {exc}") from exc
            return Resolution.RESOLVED
        raise StorageError(f"dependency edge {dependency_id} -> {dependent_id} kept conflicting; retried later")

    def delete_edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Delete the edges of the (dependency, dependent) ``pairs``, whose dependents no longer wait (25 a request;
        deleting one already gone changes nothing)."""
        unique = dict.fromkeys(pairs)  # a request may not name a key twice
        keys = [edge_key(tenant, dependency_id, dependent_id, self._shards) for dependency_id, dependent_id in unique]
        self._write_all([{"DeleteRequest": {"Key": key}} for key in keys])

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), _BATCH_GET_MAX):
            pending: dict[str, Any] = {
                self._table: {"Keys": keys[start : start + _BATCH_GET_MAX], "ConsistentRead": True}
            }
            for attempt in range(_ROUNDS):
                try:
                    response = self._ddb.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageError(f"DynamoDB BatchGetItem (dependencies) failed: {exc}") from exc
                items += response.get("Responses", {}).get(self._table, [])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._sleep(0.02 * 2**attempt)
            else:
                raise StorageError("DynamoDB BatchGetItem (dependencies) left keys unprocessed")
        return items


def _expiry() -> dict[str, str]:
    return {"N": str(int(time.time()) + RESOLVED_EDGE_TTL_SECONDS)}
