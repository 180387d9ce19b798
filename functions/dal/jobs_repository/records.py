"""Job records: create (alone, with an idempotency claim, or a batch's children in chunks), read, and write.

Every write is conditional on the record's ``version``: a transition is read -> decide -> write, and a writer that
lost a race gets ``ConcurrentUpdate`` and decides again from a fresh read. The counters are not written here: the
stats aggregator applies the table's stream to them (stream.py), so a record write is one plain conditional write
(a transaction would double its write units, and the counter update would cost as much again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository.idempotency import IdempotencyClaims
from functions.dal.jobs_repository.interface import Claim, IdempotencyClaim
from functions.dal.jobs_repository.items import expired, history_item, is_job_item, status_keys
from functions.dal.jobs_repository.keys import INDEX_BY_SWEEP, batch_key, record_key, sweep_shard
from functions.dal.jobs_repository.table import read_item
from functions.models.errors import ConcurrentUpdate, StorageError
from functions.models.job import HistoryEntry, Job, JobStatus, Progress

# TransactWriteItems takes 100 items and 4 MB: create_many's chunks stay below both.
_CREATE_CHUNK_JOBS = 99
_CREATE_CHUNK_BYTES = 3_500_000
_CREATE_OVERHEAD_BYTES = 2_000  # a record's attributes besides its payload, generously


class Records(IdempotencyClaims):
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

    def claim_pending(
        self, tenant: str, job_id: str, job_type: str, at: str, lease_until_ms: int, latest_sweep_at: str
    ) -> Claim:
        """One UpdateItem that returns the claimed record (``ALL_NEW``), or, when its condition fails, the record as
        it stood (``ALL_OLD``): the consumer's claim costs one write and no read."""
        if "#" in job_id:
            return Claim(claimed=False, job=None)  # not a job id (see ``get``)
        entry = HistoryEntry(status=JobStatus.PROCESSING, at=at, attempt=1)
        values: dict[str, Any] = {
            ":pending": {"S": JobStatus.PENDING.value},
            ":processing": {"S": JobStatus.PROCESSING.value},
            ":type": {"S": job_type},
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":at": {"S": at},
            ":lease": {"N": str(lease_until_ms)},
            ":entry": {"L": [{"M": history_item(entry)}]},
            ":latest": {"S": latest_sweep_at},
            ":shard": {"S": sweep_shard(job_id, self._sweep_shards)},
        }
        key_updates = []
        processing_keys = status_keys(tenant, job_id, JobStatus.PROCESSING, self._layout)
        for position, (name, value) in enumerate(processing_keys.items()):
            values[f":k{position}"] = {"S": value}
            key_updates.append(f"{name} = :k{position}")
        update = ", ".join(
            [
                "#s = :processing",
                "attempts = :one",
                "startedAt = :at",
                "updatedAt = :at",
                "leaseUntil = :lease",
                "version = version + :one",
                "history = list_append(history, :entry)",
                # A pending job's mark (due soon after it was accepted) is kept: moving it would cost the sweep index
                # a delete and a put; the sweeper moves it on if it comes due while the attempt is live.
                "sweepAt = if_not_exists(sweepAt, :latest)",
                "sweepShard = if_not_exists(sweepShard, :shard)",
                *key_updates,
            ]
        )
        try:
            response = self._ddb.update_item(
                TableName=self._jobs_table,
                Key={"pk": {"S": record_key(tenant, job_id)}},
                UpdateExpression=f"SET {update} REMOVE nextAttemptAt",
                ConditionExpression=(
                    "#s = :pending AND attempts = :zero AND #t = :type "
                    "AND (attribute_not_exists(sweepAt) OR sweepAt <= :latest)"
                ),
                ExpressionAttributeNames={"#s": "status", "#t": "type"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StorageError(f"DynamoDB write failed: {exc}") from exc
            item = exc.response.get("Item")
            if not item or not is_job_item(item) or expired(item):
                return Claim(claimed=False, job=None)
            return Claim(claimed=False, job=self._from_item(item))
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        return Claim(claimed=True, job=self._from_item(response["Attributes"]))

    def record_progress(self, job: Job, progress: Progress) -> bool:
        """Set the record's progress if it is still ``job`` (same version), leaving the version as it is."""
        return self._set_keeping_version(
            job, "SET progressJson = :p", {":p": {"S": progress.model_dump_json(by_alias=True)}}
        )

    def _set_keeping_version(self, job: Job, update: str, values: dict[str, Any]) -> bool:
        """Apply ``update`` if the record is still ``job`` (same version), without changing the version; False if
        the record moved on (its own writer's values stand)."""
        try:
            self._ddb.update_item(
                TableName=self._jobs_table,
                Key={"pk": {"S": record_key(job.tenant, job.id)}},
                UpdateExpression=update,
                ConditionExpression="version = :v",
                ExpressionAttributeValues={**values, ":v": {"N": str(job.version)}},
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

    def get(self, tenant: str, job_id: str) -> Job | None:
        if "#" in job_id:
            # Not a job id: batches and idempotency keys share the table under "<tenant>#batch#..." and the like.
            return None
        item = read_item(self._ddb, self._jobs_table, record_key(tenant, job_id))
        if not item or not is_job_item(item) or expired(item):
            return None
        return self._from_item(item)

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
        keys = [{"pk": item["pk"]} for item in response.get("Items", [])]
        records = [
            self._from_item(item)
            for item in self._batch_read(self._jobs_table, keys, consistent=False)
            if is_job_item(item) and not expired(item)
        ]
        due = [job for job in records if job.sweep_at is not None and job.sweep_at <= until]
        return sorted(due, key=lambda job: (job.sweep_at or "", job.id))

    def move_sweep_mark(self, job: Job, sweep_at: str) -> bool:
        """Move the record's sweep mark if it is still ``job`` (same version), leaving the version as it is: the
        sweeper looking at a running job later must not make the attempt's own conditional writes fail."""
        shard = sweep_shard(job.id, self._sweep_shards)
        return self._set_keeping_version(
            job, "SET sweepAt = :at, sweepShard = :shard", {":at": {"S": sweep_at}, ":shard": {"S": shard}}
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
