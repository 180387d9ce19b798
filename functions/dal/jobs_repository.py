"""Job records and per-tenant counters in DynamoDB.

Every write is conditional on the record's ``version``: a transition is read -> decide -> write, and a writer that
lost a race gets ``ConcurrentUpdate`` and decides again from a fresh read. The counters are not written here: the
stats aggregator applies the table's stream to them (``stream_change``, ``apply_stream_deltas``), each stream record
exactly once, so they are exact however the writers interleave or crash, and a record write is one plain
conditional write (a transaction would double its write units, and the counter update would cost as much again).

No partition key takes a tenant's whole traffic (DynamoDB allows 1,000 writes/s per key): counters are spread
over ``stats_shards`` items, the per-minute throughput over ``throughput_shards``, and every index key carries a
shard of the job id (``listing_shards``, ``sweep_shards``). A listing queries each shard of its key and merges
them newest first. Shard counts may grow on a live table (the old shards stay in range), never shrink.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import ConcurrentUpdate, IdempotencyKeyUsed, InvalidQuery, StorageError
from functions.models.job import Callback, HistoryEntry, Job, JobStatus, Progress

STATUS_COUNTERS = tuple(status.value for status in JobStatus)
ENQUEUED_COUNTER = "enqueued"

THROUGHPUT_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
THROUGHPUT_COUNTERS = tuple(sorted(status.value for status in THROUGHPUT_STATUSES))
THROUGHPUT_RETENTION_SECONDS = 2 * 86_400


def minute_key(at: str) -> str:
    """``2026-11-23T14:05:59.123Z`` -> ``2026-11-23T14:05Z``."""
    return at[:16] + "Z"


# The per-minute items of a tenant: "<tenant>#m#<minute>#<shard>", and one summary of a settled minute's shards.
SETTLED_SUMMARY = "all"


def _throughput_key(tenant: str, minute: str, shard: str) -> str:
    return f"{tenant}#m#{minute}#{shard}"


def _throughput_minute(tenant: str, item: dict[str, Any]) -> str:
    return str(item["pk"]["S"][len(tenant) + 3 :].rsplit("#", 1)[0])


def _minute_epoch(minute: str) -> int:
    return int(datetime.fromisoformat(minute[:-1] + ":00+00:00").timestamp())


# TransactWriteItems takes 100 items and 4 MB: create_many's chunks stay below both.
_CREATE_CHUNK_JOBS = 99
_CREATE_CHUNK_BYTES = 3_500_000
_CREATE_OVERHEAD_BYTES = 2_000  # a record's attributes besides its payload, generously

INDEX_BY_TENANT = "by-tenant"
INDEX_BY_STATUS = "by-status"
INDEX_BY_TYPE = "by-type"
INDEX_BY_SWEEP = "by-sweep"

# The non-key attributes the listing indexes project: what their queries filter on. The type never changes, so a
# job's updates that keep its index keys (attempts, progress, results, expiry...) cost these indexes no write.
LISTING_INDEX_ATTRIBUTES = ("type",)

# A job's status partition in the by-status index: the statuses a job passes through on its way to a final one
# share one, so claiming, retrying and re-claiming a job move no index entry (moving one is a delete and a put:
# two write units a transition). A listing of one of them filters the shared partition by the records' status; it
# holds the in-flight jobs only, and a page examines at most ``listing_read_budget`` index entries.
IN_FLIGHT_PARTITION = "in-flight"
IN_FLIGHT_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING})


def status_partition(status: JobStatus) -> str:
    return IN_FLIGHT_PARTITION if status in IN_FLIGHT_STATUSES else status.value


# index name -> (partition key attribute, sort key attribute)
_INDEX_KEYS = {
    INDEX_BY_TENANT: ("tenantKey", "createdKey"),
    INDEX_BY_STATUS: ("tenantStatus", "createdKey"),
    INDEX_BY_TYPE: ("tenantType", "createdKey"),
}


@dataclass(frozen=True)
class StatusChange:
    """What one record of the jobs table's stream means for the counters: a job record's status before and after
    (``before`` None: created; ``after`` None: removed, e.g. expired), with the new record's ``updatedAt``."""

    tenant: str
    before: str | None
    after: str | None
    at: str


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
    )


def _watermark_key(stream_shard: str) -> str:
    return f"stream#{stream_shard}"


@dataclass(frozen=True)
class IdempotencyClaim:
    """Remember ``key`` -> ``target_id`` with the request's fingerprint until ``expires_at`` (epoch seconds)."""

    key: str
    fingerprint: str
    target_id: str
    expires_at: int
    now: int


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobsRepository(Protocol):
    def create(self, job: Job, idempotency: IdempotencyClaim | None = None) -> None: ...
    def create_many(self, jobs: Sequence[Job], *, resume: bool = False) -> int: ...
    def claim_idempotency(self, tenant: str, claim: IdempotencyClaim) -> None: ...
    def get(self, tenant: str, job_id: str) -> Job | None: ...
    def save(self, before: Job, after: Job) -> None: ...
    def record_progress(self, job: Job, progress: Progress) -> bool: ...
    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage: ...
    def counters(self, tenant: str) -> dict[str, int]: ...
    def throughput(
        self, tenant: str, minutes: list[str], settled_before: str | None = None
    ) -> dict[str, dict[str, int]]: ...
    def due_for_sweep(self, shard: int, until: str, limit: int) -> list[Job]: ...
    def move_sweep_mark(self, job: Job, sweep_at: str) -> bool: ...


def record_key(tenant: str, job_id: str) -> str:
    return f"{tenant}#{job_id}"


def batch_key(tenant: str, batch_id: str) -> str:
    # Batches live in the jobs table beside their children (no index attributes, so no index holds them).
    return f"{tenant}#batch#{batch_id}"


def idempotency_key_item(tenant: str, key: str) -> str:
    # Hashed: a caller's key may be long or hold characters we would rather not have in a key.
    return f"{tenant}#idem#{hashlib.sha256(key.encode()).hexdigest()}"


def _id_hash(job_id: str) -> int:
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16)


def key_shard(job_id: str, shards: int) -> int:
    """A job's shard among ``shards``: stable (a hash of its id), so its index keys never move between writes."""
    return _id_hash(job_id) % shards


def sweep_shard(job_id: str, shards: int) -> str:
    return str(key_shard(job_id, shards))


# A listing's first round queries its shards concurrently (boto3 clients are thread-safe); later refills of a
# shard are rare and sequential.
_LISTING_CONCURRENCY = 16
# A shard's first query asks for about twice its even share of the page, at least this many.
_MIN_SHARD_PAGE = 4
# A createdKey is an ISO timestamp, "#" and a job id (~60 characters): a cursor resuming after more is not ours.
_MAX_CURSOR_KEY = 300


class DynamoJobsRepository:
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

    # --- writes ---

    def create(self, job: Job, idempotency: IdempotencyClaim | None = None) -> None:
        """Store a new job; with ``idempotency``, atomically with the key's claim (``IdempotencyKeyUsed`` if taken)."""
        items = self.creation_items([job])
        if idempotency is None:
            self._transact(items)
            return
        items.append(self.idempotency_put(job.tenant, idempotency))
        try:
            self._transact(items)
        except ConcurrentUpdate:
            raise self.idempotency_taken(job.tenant, idempotency.key) from None

    def create_many(self, jobs: Sequence[Job], *, resume: bool = False) -> int:
        """Store new jobs of one tenant (a fan-out batch's children), a transaction per chunk of at most 99 jobs
        and ~3.5 MB: a chunk is stored whole or not at all (the stream counts what was stored). Returns how many
        this call stored.

        ``resume``: another request with the same jobs (a keyed batch's earlier or concurrent one) may have stored
        some chunks; a chunk already stored (its first job exists: chunks are cut the same way for the same jobs) is
        skipped instead of failing."""
        stored = 0
        for chunk in _creation_chunks(jobs):
            try:
                self._transact(self.creation_items(chunk))
            except ConcurrentUpdate:
                if not resume or self.get(chunk[0].tenant, chunk[0].id) is None:
                    raise
            else:
                stored += len(chunk)
        return stored

    def claim_idempotency(self, tenant: str, claim: IdempotencyClaim) -> None:
        """Claim a key on its own write (a fan-out batch's, whose jobs follow in several); ``IdempotencyKeyUsed``
        naming the holder if it is taken."""
        try:
            self._transact([self.idempotency_put(tenant, claim)])
        except ConcurrentUpdate:
            raise self.idempotency_taken(tenant, claim.key) from None

    def creation_items(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Transaction items creating new jobs: a Put each, never over an existing record (the stats aggregator
        counts them from the stream)."""
        return [
            {
                "Put": {
                    "TableName": self._jobs_table,
                    "Item": self._to_item(job),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for job in jobs
        ]

    def idempotency_put(self, tenant: str, claim: IdempotencyClaim) -> dict[str, Any]:
        """The transaction item claiming an idempotency key; an expired claim (TTL not yet run) may be taken over."""
        return {
            "Put": {
                "TableName": self._jobs_table,
                "Item": {
                    "pk": {"S": idempotency_key_item(tenant, claim.key)},
                    "target": {"S": claim.target_id},
                    "fingerprint": {"S": claim.fingerprint},
                    "expiresAt": {"N": str(claim.expires_at)},
                },
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": {"N": str(claim.now)}},
            }
        }

    def idempotency_taken(self, tenant: str, key: str) -> Exception:
        """The error for a key found taken: ``IdempotencyKeyUsed`` naming its holder (read back consistently)."""
        try:
            response = self._ddb.get_item(
                TableName=self._jobs_table, Key={"pk": {"S": idempotency_key_item(tenant, key)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            return StorageError(f"DynamoDB read failed: {exc}")
        item = response.get("Item")
        if not item:
            # Taken, then expired and removed between our write and this read: a retry will claim it.
            return ConcurrentUpdate("the idempotency key changed hands; try again")
        return IdempotencyKeyUsed(item["target"]["S"], item["fingerprint"]["S"])

    def save(self, before: Job, after: Job) -> None:
        """Write ``after`` if the stored record is still ``before``; raises ConcurrentUpdate otherwise."""
        put = {
            "Put": {
                "TableName": self._jobs_table,
                "Item": self._to_item(after.model_copy(update={"version": before.version + 1})),
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(before.version)}},
            }
        }
        items: list[dict[str, Any]] = [put]
        if after.batch_id and before.status.is_final != after.status.is_final:
            items.append(self._batch_progress(after, before))
        self._transact(items)

    def record_progress(self, job: Job, progress: Progress) -> bool:
        """Set the record's progress if it is still ``job`` (same version), leaving the version as it is."""
        try:
            self._ddb.update_item(
                TableName=self._jobs_table,
                Key={"pk": {"S": record_key(job.tenant, job.id)}},
                UpdateExpression="SET progressJson = :p",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={
                    ":p": {"S": progress.model_dump_json(by_alias=True)},
                    ":v": {"N": str(job.version)},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        return True

    def _batch_progress(self, after: Job, before: Job) -> dict[str, Any]:
        # A child's entering or leaving a final state moves its batch's counters in the same transaction, so
        # they are exact; the batch is complete when ``finished`` reaches ``total`` (logic/batches.py).
        step = 1 if after.status.is_final else -1
        unsuccessful = after if after.status.is_final else before
        deltas = {"finished": step, "unsuccessful": step if unsuccessful.status != JobStatus.COMPLETED else 0}
        return {
            "Update": {
                "TableName": self._jobs_table,
                "Key": {"pk": {"S": batch_key(after.tenant, after.batch_id or "")}},
                "UpdateExpression": "ADD finished :f, unsuccessful :u",
                "ExpressionAttributeValues": {
                    ":f": {"N": str(deltas["finished"])},
                    ":u": {"N": str(deltas["unsuccessful"])},
                },
            }
        }

    # --- the stats aggregator's side (the jobs table's stream) ---

    def stream_watermark(self, stream_shard: str) -> str | None:
        """The last stream sequence number applied from this stream shard (zero-padded), None before the first."""
        try:
            response = self._ddb.get_item(
                TableName=self._stats_table, Key={"pk": {"S": _watermark_key(stream_shard)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB read failed: {exc}") from exc
        item = response.get("Item")
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
        return self._stats_add(f"{tenant}#{shard}", deltas)

    def _throughput_update(self, tenant: str, minute: str, counts: dict[str, int], now_s: int) -> dict[str, Any]:
        # Per-minute completions and failures for the dashboard's chart, sharded like the counters; the items
        # expire after THROUGHPUT_RETENTION_SECONDS (DynamoDB TTL on ``expiresAt``).
        shard = random.randrange(self._throughput_shards)
        expires = max(_minute_epoch(minute), now_s) + THROUGHPUT_RETENTION_SECONDS
        return self._stats_add(_throughput_key(tenant, minute, str(shard)), counts, expires)

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

    # --- reads ---

    def get(self, tenant: str, job_id: str) -> Job | None:
        if "#" in job_id:
            # Not a job id: batches and idempotency keys share the table under "<tenant>#batch#..." and the like.
            return None
        try:
            response = self._ddb.get_item(
                TableName=self._jobs_table, Key={"pk": {"S": record_key(tenant, job_id)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB read failed: {exc}") from exc
        item = response.get("Item")
        if not item or "type" not in item or _expired(item):
            return None
        return self._from_item(item)

    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage:
        # ``listing`` names the listing in its cursors; ``partition`` is the index partition it reads.
        if status is not None:
            index, listing = INDEX_BY_STATUS, f"{tenant}#{status.value}"
            partition = f"{tenant}#{status_partition(status)}"
        elif job_type is not None:
            index, listing = INDEX_BY_TYPE, f"{tenant}#{job_type}"
            partition = listing
        else:
            index, listing = INDEX_BY_TENANT, tenant
            partition = listing
        sk_attr = _INDEX_KEYS[index][1]
        after = _decode_cursor(cursor, index, listing) if cursor else None
        shard_page = min(limit, max(_MIN_SHARD_PAGE, -(-2 * limit // self._listing_shards)))
        readers = [
            _ShardReader(
                self._ddb, self._shard_query(index, f"{partition}#{shard}", after, status, job_type), shard_page
            )
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
            records = self._records([item["pk"]["S"] for item in chunk])
            for item in chunk:
                job = records.get(item["pk"]["S"])
                # Left out: expired records (waiting for DynamoDB's TTL sweep, already gone for the API), and, the
                # index being eventually consistent, a record that has moved to another status since.
                if job is not None and (status is None or job.status == status):
                    jobs.append(job)
                last_item = item
        more = next(merged, None) is not None
        next_cursor = None
        if more and last_item is not None:
            next_cursor = _encode_cursor({"i": index, "p": listing, "after": last_item[sk_attr]["S"]})
        return JobPage(jobs=jobs, next_cursor=next_cursor)

    def _shard_query(
        self, index: str, shard_partition: str, after: str | None, status: JobStatus | None, job_type: str | None
    ) -> dict[str, Any]:
        pk_attr, sk_attr = _INDEX_KEYS[index]
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
        if status is not None and job_type is not None:
            # Both filters: the status index narrows, the type is filtered; a shard reads on until it yields.
            query["FilterExpression"] = "#t = :t"
            query["ExpressionAttributeNames"]["#t"] = "type"
            query["ExpressionAttributeValues"][":t"] = {"S": job_type}
        return query

    def _records(self, keys: list[str]) -> dict[str, Job]:
        """The live job records under these ``pk``s; not the missing or expired."""
        unique = [{"pk": {"S": key}} for key in dict.fromkeys(keys)]
        return {
            item["pk"]["S"]: self._from_item(item)
            for item in self._batch_read(self._jobs_table, unique, consistent=False)
            if "type" in item and not _expired(item)
        }

    def counters(self, tenant: str) -> dict[str, int]:
        keys = [{"pk": {"S": f"{tenant}#{shard}"}} for shard in range(self._stats_shards)]
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
        summary_keys = [{"pk": {"S": _throughput_key(tenant, minute, SETTLED_SUMMARY)}} for minute in settled]
        for item in self._batch_read(self._stats_table, summary_keys, consistent=False):
            minute = _throughput_minute(tenant, item)
            summarized.add(minute)
            totals[minute] = {name: int(item[name]["N"]) if name in item else 0 for name in THROUGHPUT_COUNTERS}
        shard_keys = [
            {"pk": {"S": _throughput_key(tenant, minute, str(shard))}}
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

    def _summarize(self, tenant: str, counts: dict[str, dict[str, int]]) -> None:
        # Best effort: a summary not written now is written by the next read (the shards are still there).
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": _throughput_key(tenant, minute, SETTLED_SUMMARY)},
                        **{name: {"N": str(count)} for name, count in minute_counts.items()},
                        "expiresAt": {"N": str(_minute_epoch(minute) + THROUGHPUT_RETENTION_SECONDS)},
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

    def due_for_sweep(self, shard: int, until: str, limit: int) -> list[Job]:
        """The records whose sweep mark in ``shard`` is due by ``until``, earliest first.

        The index holds keys only, so that a job's writes that keep its mark (a claim, progress, a retry) cost the
        index nothing; the due records are then read by key, and one whose mark moved meanwhile is left out."""
        try:
            response = self._ddb.query(
                TableName=self._jobs_table,
                IndexName=INDEX_BY_SWEEP,
                KeyConditionExpression="sweepShard = :s AND sweepAt <= :until",
                ExpressionAttributeValues={":s": {"S": str(shard)}, ":until": {"S": until}},
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB query failed: {exc}") from exc
        records = self._records([item["pk"]["S"] for item in response.get("Items", [])])
        due = [job for job in records.values() if job.sweep_at is not None and job.sweep_at <= until]
        return sorted(due, key=lambda job: (job.sweep_at or "", job.id))

    # --- mapping ---

    def _to_item(self, job: Job) -> dict[str, Any]:
        id_hash = _id_hash(job.id)  # one hash for both shards (key_shard's)
        listing_shard = id_hash % self._listing_shards
        item: dict[str, Any] = {
            "pk": {"S": record_key(job.tenant, job.id)},
            "id": {"S": job.id},
            "tenant": {"S": job.tenant},
            "type": {"S": job.type},
            "status": {"S": job.status.value},
            "payloadJson": {"S": json.dumps(job.payload, separators=(",", ":"))},
            "priority": {"N": str(job.priority)},
            "attempts": {"N": str(job.attempts)},
            "maxAttempts": {"N": str(job.max_attempts)},
            "createdAt": {"S": job.created_at},
            "updatedAt": {"S": job.updated_at},
            "version": {"N": str(job.version)},
            "history": {"L": [{"M": _history_item(entry)} for entry in job.history]},
            # Listing indexes: newest first within a tenant, by status, by type; each key in one of listing_shards.
            "createdKey": {"S": f"{job.created_at}#{job.id}"},
            "tenantKey": {"S": f"{job.tenant}#{listing_shard}"},
            "tenantStatus": {"S": f"{job.tenant}#{status_partition(job.status)}#{listing_shard}"},
            "tenantType": {"S": f"{job.tenant}#{job.type}#{listing_shard}"},
        }
        optional_strings = {
            "runAt": job.run_at,
            "startedAt": job.started_at,
            "completedAt": job.completed_at,
            "error": job.error,
        }
        for name, value in optional_strings.items():
            if value is not None:
                item[name] = {"S": value}
        if job.result is not None:
            item["resultJson"] = {"S": json.dumps(job.result, separators=(",", ":"))}
        if job.payload_ref is not None:
            item["payloadRef"] = {"S": job.payload_ref}
        for name, text_value in (
            ("groupId", job.group_id),
            ("batchId", job.batch_id),
            ("idempotencyKey", job.idempotency_key),
        ):
            if text_value is not None:
                item[name] = {"S": text_value}
        if job.progress is not None:
            item["progressJson"] = {"S": job.progress.model_dump_json(by_alias=True)}
        if job.callback is not None:
            callback = job.callback.model_dump(mode="json", by_alias=True)
            callback["forVersion"] = job.callback.for_version
            item["callbackJson"] = {"S": json.dumps(callback, separators=(",", ":"))}
        if job.lease_until_ms is not None:
            item["leaseUntil"] = {"N": str(job.lease_until_ms)}
        if job.next_attempt_at_ms is not None:
            item["nextAttemptAt"] = {"N": str(job.next_attempt_at_ms)}
        if job.status.is_final and self._retention_seconds:
            ended = datetime.fromisoformat(job.completed_at or job.updated_at).timestamp()
            item["expiresAt"] = {"N": str(int(ended) + self._retention_seconds)}
        if job.sweep_at is not None:
            # Sparse index: only jobs the sweeper must look at carry these attributes.
            item["sweepShard"] = {"S": str(id_hash % self._sweep_shards)}
            item["sweepAt"] = {"S": job.sweep_at}
        return item

    @staticmethod
    def _from_item(item: dict[str, Any]) -> Job:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        def number(name: str) -> int | None:
            return int(item[name]["N"]) if name in item else None

        return Job(
            id=item["id"]["S"],
            tenant=item["tenant"]["S"],
            type=item["type"]["S"],
            payload=json.loads(item["payloadJson"]["S"]),
            status=JobStatus(item["status"]["S"]),
            priority=int(item["priority"]["N"]),
            attempts=int(item["attempts"]["N"]),
            max_attempts=int(item["maxAttempts"]["N"]),
            created_at=item["createdAt"]["S"],
            updated_at=item["updatedAt"]["S"],
            run_at=text("runAt"),
            started_at=text("startedAt"),
            completed_at=text("completedAt"),
            result=json.loads(item["resultJson"]["S"]) if "resultJson" in item else None,
            error=text("error"),
            history=tuple(_history_entry(entry["M"]) for entry in item.get("history", {}).get("L", [])),
            version=int(item["version"]["N"]),
            lease_until_ms=number("leaseUntil"),
            next_attempt_at_ms=number("nextAttemptAt"),
            sweep_at=text("sweepAt"),
            payload_ref=text("payloadRef"),
            group_id=text("groupId"),
            batch_id=text("batchId"),
            idempotency_key=text("idempotencyKey"),
            progress=Progress.model_validate_json(item["progressJson"]["S"]) if "progressJson" in item else None,
            callback=_callback(item["callbackJson"]["S"]) if "callbackJson" in item else None,
        )

    def move_sweep_mark(self, job: Job, sweep_at: str) -> bool:
        """Move the record's sweep mark if it is still ``job`` (same version), leaving the version as it is: the
        sweeper looking at a running job later must not make the attempt's own conditional writes fail."""
        try:
            self._ddb.update_item(
                TableName=self._jobs_table,
                Key={"pk": {"S": record_key(job.tenant, job.id)}},
                UpdateExpression="SET sweepAt = :at, sweepShard = :shard",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={
                    ":at": {"S": sweep_at},
                    ":shard": {"S": str(_id_hash(job.id) % self._sweep_shards)},
                    ":v": {"N": str(job.version)},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        return True


def _expired(item: dict[str, Any]) -> bool:
    return "expiresAt" in item and int(item["expiresAt"]["N"]) <= time.time()


def _callback(text: str) -> Callback:
    data = json.loads(text)
    for_version = data.pop("forVersion", None)
    return Callback.model_validate(data).model_copy(update={"for_version": for_version})


def _history_item(entry: HistoryEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"status": {"S": entry.status.value}, "at": {"S": entry.at}}
    if entry.attempt is not None:
        item["attempt"] = {"N": str(entry.attempt)}
    if entry.error is not None:
        item["error"] = {"S": entry.error}
    return item


def _history_entry(item: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        status=JobStatus(item["status"]["S"]),
        at=item["at"]["S"],
        attempt=int(item["attempt"]["N"]) if "attempt" in item else None,
        error=item["error"]["S"] if "error" in item else None,
    )


def _creation_chunks(jobs: Sequence[Job]) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    size = 0
    for job in jobs:
        job_size = _CREATE_OVERHEAD_BYTES + len(json.dumps(job.payload, separators=(",", ":")))
        if chunk and (len(chunk) == _CREATE_CHUNK_JOBS or size + job_size > _CREATE_CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(job)
        size += job_size
    if chunk:
        yield chunk


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
        raise InvalidQuery("'cursor' is not a cursor returned by this listing") from exc
    if (
        not isinstance(key, dict)
        or set(key) != {"i", "p", "after"}
        or not all(isinstance(value, str) for value in key.values())
        or key["i"] != index
        or key["p"] != partition
        or not 0 < len(key["after"]) <= _MAX_CURSOR_KEY
    ):
        raise InvalidQuery("'cursor' is not a cursor returned by this listing")
    after: str = key["after"]
    return after
