"""Listing a tenant's jobs newest first (all, by status, by type), a page at a time with opaque cursors.

Two indexes serve every listing: by-tenant (every job, from its creation) and by-status (failed and cancelled jobs
only, from their end: keys.py). A type is a filter on either's entries, which project it: a type index would cost
every job a write unit at creation for what a filter on entries the listing reads anyway gives.

A listing index key carries a shard of the job id (keys.py): a page queries each shard of its partition and merges
them on ``createdKey``. The indexes hold keys and the type only, so a job's updates do not rewrite them; the page's
records are then read by key. Only the sparse final statuses have by-status entries; the others (completed among
them) are listed from the tenant's partition, keeping the records in that status.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository.interface import InvalidCursor, JobPage
from functions.dal.jobs_repository.items import expired, is_job_item
from functions.dal.jobs_repository.keys import (
    INDEX_BY_STATUS,
    INDEX_BY_TENANT,
    INDEX_KEYS,
    status_partition,
)
from functions.dal.jobs_repository.table import DynamoTables
from functions.models.errors import StorageError
from functions.models.job import Job, JobStatus

# A listing's first round queries its shards concurrently (boto3 clients are thread-safe); later refills of a
# shard are rare and sequential.
_LISTING_CONCURRENCY = 16
# A shard's first query asks for about twice its even share of the page, at least this many.
_MIN_SHARD_PAGE = 4
# A createdKey is an ISO timestamp, "#" and a job id (~60 characters): a cursor resuming after more is not ours.
_MAX_CURSOR_KEY = 300


class Listing(DynamoTables):
    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage:
        # ``listing`` names the listing in its cursors; ``partition`` is the index partition it reads. A type is
        # filtered on the index entries (they project it) before any record is read; a status without index entries
        # (keys.py) on the records. A page examines at most ``listing_read_budget`` entries either way.
        status_entries = status_partition(status) if status is not None else None
        if status is not None and status_entries is not None:
            index, listing = INDEX_BY_STATUS, f"{tenant}#{status.value}"
            partition = f"{tenant}#{status_entries}"
        else:
            index, partition = INDEX_BY_TENANT, tenant
            listing = tenant if status is None else f"{tenant}#{status.value}"
        if job_type is not None:
            listing += f"#type#{job_type}"
        sk_attr = INDEX_KEYS[index][1]
        after = _decode_cursor(cursor, index, listing) if cursor else None
        shard_page = min(limit, max(_MIN_SHARD_PAGE, -(-2 * limit // self._listing_shards)))
        readers = [
            _ShardReader(self._ddb, self._shard_query(index, f"{partition}#{shard}", after), shard_page)
            for shard in range(self._listing_shards)
        ]
        if len(readers) > 1:
            with ThreadPoolExecutor(max_workers=min(_LISTING_CONCURRENCY, len(readers))) as pool:
                list(pool.map(_ShardReader.fetch, readers))
        # createdKey is "<createdAt>#<id>": unique, so newest first across shards is a merge on it.
        merged = heapq.merge(*(reader.items() for reader in readers), key=lambda item: item[sk_attr]["S"], reverse=True)

        # The listing indexes hold keys and the type only (LISTING_INDEX_ATTRIBUTES), so that a job's updates do not
        # rewrite them; each chunk of keys is then read in one BatchGetItem.
        jobs: list[Job] = []
        last_item: dict[str, Any] | None = None
        examined = 0
        while len(jobs) < limit and examined < self._listing_read_budget:
            chunk = list(itertools.islice(merged, min(limit - len(jobs), self._listing_read_budget - examined)))
            if not chunk:
                break
            examined += len(chunk)
            of_type = [item for item in chunk if job_type is None or item["type"]["S"] == job_type]
            records = self._records([item["pk"]["S"] for item in of_type])
            for item in chunk:
                job = records.get(item["pk"]["S"])
                # Left out: another type's entries (not read), expired records (waiting for DynamoDB's TTL sweep,
                # already gone for the API), and, the index being eventually consistent, a record that has moved to
                # another status since.
                if job is not None and (status is None or job.status == status):
                    jobs.append(job)
                last_item = item
        more = next(merged, None) is not None
        next_cursor = None
        if more and last_item is not None:
            next_cursor = _encode_cursor({"i": index, "p": listing, "after": last_item[sk_attr]["S"]})
        return JobPage(jobs=jobs, next_cursor=next_cursor)

    def _shard_query(self, index: str, shard_partition: str, after: str | None) -> dict[str, Any]:
        pk_attr, sk_attr = INDEX_KEYS[index]
        query: dict[str, Any] = {
            "TableName": self._jobs_table,
            "IndexName": index,
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": pk_attr},
            "ExpressionAttributeValues": {":p": {"S": shard_partition}},
            "ScanIndexForward": False,  # newest first
        }
        if after is not None:
            query["KeyConditionExpression"] += " AND #k < :after"
            query["ExpressionAttributeNames"]["#k"] = sk_attr
            query["ExpressionAttributeValues"][":after"] = {"S": after}
        return query

    def _records(self, keys: list[str]) -> dict[str, Job]:
        """The live job records under these ``pk``s; not the missing or expired."""
        unique = [{"pk": {"S": key}} for key in dict.fromkeys(keys)]
        return {
            item["pk"]["S"]: self._from_item(item)
            for item in self._batch_read(self._jobs_table, unique, consistent=False)
            if is_job_item(item) and not expired(item)
        }


class _ShardReader:
    """One shard of a listing, newest first: a buffer of index items refilled by Query as the merge consumes it."""

    def __init__(self, ddb: Any, query: dict[str, Any], first_page: int) -> None:
        self._ddb = ddb
        self._query = query
        self._page = first_page
        self._buffer: deque[dict[str, Any]] = deque()
        self._start_key: dict[str, Any] | None = None
        self._exhausted = False

    def fetch(self) -> None:
        request = dict(self._query, Limit=self._page)
        if self._start_key:
            request["ExclusiveStartKey"] = self._start_key
        try:
            response = self._ddb.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB query failed: {exc}") from exc
        self._buffer.extend(response.get("Items", []))
        self._start_key = response.get("LastEvaluatedKey")
        self._exhausted = not self._start_key
        self._page = min(100, 2 * self._page)  # a shard asked again holds more of the page than its share

    def items(self) -> Iterator[dict[str, Any]]:
        while True:
            while self._buffer:
                yield self._buffer.popleft()
            if self._exhausted:
                return
            self.fetch()


def _encode_cursor(key: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, index: str, partition: str) -> str:
    """The ``createdKey`` a cursor resumes after; it must come from the same listing (same index and partition)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidCursor("'cursor' is not a cursor returned by this listing") from exc
    if (
        not isinstance(key, dict)
        or set(key) != {"i", "p", "after"}
        or not all(isinstance(value, str) for value in key.values())
        or key["i"] != index
        or key["p"] != partition
        or not 0 < len(key["after"]) <= _MAX_CURSOR_KEY
    ):
        raise InvalidCursor("'cursor' is not a cursor returned by this listing")
    after: str = key["after"]
    return after
