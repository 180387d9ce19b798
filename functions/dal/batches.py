"""Fan-out batch items in DynamoDB (the jobs table, key ``<tenant>#batch#<id>``), and their children's statuses.

A batch item holds what the producer wrote (``total``, ``jobIds``, ``createdAt``, the ``onComplete`` spec as JSON,
``status``) and two counters, ``finished`` and ``unsuccessful``, that the children move themselves: the jobs
repository adds ±1 in the same transaction as a child's entering or leaving a final state, so they are exact. An ADD
on a missing item creates it, so an item can exist with counters only (children that ended before the producer
wrote the batch); such an item is not a batch yet (no ``total``). Settling sets ``completedAt`` once, conditionally,
together with the creation of the ``onComplete`` job (see logic/batches.py). SDK errors are wrapped in
``StorageError``; a transaction conflict (another writer on the same item at the same instant) in ``ConcurrentUpdate``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.jobs_repository import DynamoJobsRepository, batch_key, record_key
from functions.dal.jobs_repository.table import read_item
from functions.models.errors import ConcurrentUpdate, StorageError
from functions.models.job import Job, JobStatus

RUNNING = "running"
COMPLETED = "completed"
COMPLETED_WITH_FAILURES = "completed_with_failures"

BATCH_GET_MAX_KEYS = 100  # BatchGetItem's limit
_CONFLICT_RETRIES = 4
_UNPROCESSED_RETRIES = 6


@dataclass(frozen=True)
class BatchRecord:
    tenant: str
    id: str
    # None while the item holds only counters moved by children (the producer has not written the batch yet).
    total: int | None
    job_ids: tuple[str, ...] = ()
    created_at: str | None = None
    status: str = RUNNING
    finished: int = 0
    unsuccessful: int = 0
    completed_at: str | None = None
    # The onComplete job as stored at creation (logic/batches.py ``OnComplete.to_json``), and its id once enqueued.
    on_complete: dict[str, Any] | None = None
    on_complete_job_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.total is not None

    @property
    def is_due(self) -> bool:
        """Every child is final and nobody has settled the batch yet."""
        return self.total is not None and self.completed_at is None and self.finished >= self.total


class BatchStore(Protocol):
    def open(
        self, tenant: str, batch_id: str, job_ids: list[str], created_at: str, on_complete: dict[str, Any] | None
    ) -> BatchRecord: ...
    def get(self, tenant: str, batch_id: str) -> BatchRecord | None: ...
    def settle(self, batch: BatchRecord, status: str, completed_at: str, on_complete_job: Job | None) -> bool: ...
    def child_statuses(self, tenant: str, job_ids: list[str]) -> dict[str, JobStatus]: ...


@dataclass
class DynamoBatchStore:
    ddb: Any
    jobs_table: str
    # Builds the onComplete job's record for the settling transaction (the same item as a create).
    repo: DynamoJobsRepository
    sleep: Any = field(default=time.sleep, repr=False)

    def open(
        self, tenant: str, batch_id: str, job_ids: list[str], created_at: str, on_complete: dict[str, Any] | None
    ) -> BatchRecord:
        """Write the batch over whatever counters its children already added; returns the item as it now is (the
        one written before, if another request with the same idempotency key wrote it first).

        One UpdateItem, so it is ordered with every child's counter ADD: what it returns (ALL_NEW) includes each
        child that finished before it, and each child finishing after it sees ``total``."""
        names = {"#total": "total", "#status": "status"}
        values: dict[str, Any] = {
            ":total": {"N": str(len(job_ids))},
            ":ids": {"L": [{"S": job_id} for job_id in job_ids]},
            ":at": {"S": created_at},
            ":running": {"S": RUNNING},
            ":id": {"S": batch_id},
            ":zero": {"N": "0"},
        }
        sets = ["#total = :total", "jobIds = :ids", "createdAt = :at", "#status = :running", "batchId = :id"]
        if on_complete is not None:
            sets.append("onCompleteJson = :oc")
            values[":oc"] = {"S": json.dumps(on_complete, separators=(",", ":"))}
        request = {
            "TableName": self.jobs_table,
            "Key": {"pk": {"S": batch_key(tenant, batch_id)}},
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD finished :zero, unsuccessful :zero",
            "ConditionExpression": "attribute_not_exists(#total)",  # a batch is written once
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                response = self.ddb.update_item(**request)
                return _record(tenant, batch_id, response["Attributes"])
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    # Written already: by the request this one resumes (the same idempotency key), or its twin.
                    written = self.get(tenant, batch_id)
                    if written is not None and written.is_open:
                        return written
                # A child's transaction held the item at this instant: this write has not happened, try again.
                if code == "TransactionConflictException" and attempt < _CONFLICT_RETRIES:
                    self.sleep(0.02 * 2**attempt)
                    continue
                raise StorageError(f"DynamoDB write failed: {code}") from exc
            except BotoCoreError as exc:
                raise StorageError(f"DynamoDB write failed: {exc}") from exc
        raise StorageError("DynamoDB write failed: the batch item kept conflicting")  # pragma: no cover

    def get(self, tenant: str, batch_id: str) -> BatchRecord | None:
        item = read_item(self.ddb, self.jobs_table, batch_key(tenant, batch_id))
        return _record(tenant, batch_id, item) if item else None

    def settle(self, batch: BatchRecord, status: str, completed_at: str, on_complete_job: Job | None) -> bool:
        """Mark the batch final and create its onComplete job, in one transaction, if it is still due with the
        counts read. False when the condition failed (someone else settled it, or the counts moved since)."""
        names = {"#total": "total", "#status": "status"}
        values: dict[str, Any] = {
            ":status": {"S": status},
            ":at": {"S": completed_at},
            ":u": {"N": str(batch.unsuccessful)},
        }
        sets = ["#status = :status", "completedAt = :at"]
        if on_complete_job is not None:
            sets.append("onCompleteJobId = :job")
            values[":job"] = {"S": on_complete_job.id}
        update = {
            "TableName": self.jobs_table,
            "Key": {"pk": {"S": batch_key(batch.tenant, batch.id)}},
            "UpdateExpression": "SET " + ", ".join(sets),
            # Exactly once: only the first settler finds completedAt missing. ``unsuccessful`` as read, so the
            # status written is the one the counts say at the moment of writing.
            "ConditionExpression": "attribute_exists(#total) AND attribute_not_exists(completedAt) "
            "AND finished >= #total AND unsuccessful = :u",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        try:
            if on_complete_job is None:
                self.ddb.update_item(**update)
            else:
                items = [{"Update": update}, *self.repo.creation_items([on_complete_job])]
                self.ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if code == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in reasons:
                return False
            if code == "TransactionConflictException" or "TransactionConflict" in reasons:
                raise ConcurrentUpdate("the batch item was being written by another request") from exc
            raise StorageError(f"DynamoDB write failed: {code}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write failed: {exc}") from exc
        return True

    def child_statuses(self, tenant: str, job_ids: list[str]) -> dict[str, JobStatus]:
        """The current status of each child (consistent reads, 100 keys per BatchGetItem); missing ones are left out."""
        statuses: dict[str, JobStatus] = {}
        for start in range(0, len(job_ids), BATCH_GET_MAX_KEYS):
            keys = [{"pk": {"S": record_key(tenant, job_id)}} for job_id in job_ids[start : start + BATCH_GET_MAX_KEYS]]
            request: dict[str, Any] = {
                self.jobs_table: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "#i, #s",
                    "ExpressionAttributeNames": {"#i": "id", "#s": "status"},
                }
            }
            for attempt in range(_UNPROCESSED_RETRIES + 1):
                try:
                    response = self.ddb.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageError(f"DynamoDB read failed: {exc}") from exc
                for item in response.get("Responses", {}).get(self.jobs_table, []):
                    statuses[item["id"]["S"]] = JobStatus(item["status"]["S"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                if attempt == _UNPROCESSED_RETRIES:
                    raise StorageError("DynamoDB read failed: keys left unprocessed (throttled)")
                self.sleep(0.05 * 2**attempt)  # unprocessed keys mean throttling: back off before asking again
        return statuses


def _record(tenant: str, batch_id: str, item: dict[str, Any]) -> BatchRecord:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def number(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    return BatchRecord(
        tenant=tenant,
        id=batch_id,
        total=int(item["total"]["N"]) if "total" in item else None,
        job_ids=tuple(entry["S"] for entry in item.get("jobIds", {}).get("L", [])),
        created_at=text("createdAt"),
        status=text("status") or RUNNING,
        finished=number("finished"),
        unsuccessful=number("unsuccessful"),
        completed_at=text("completedAt"),
        on_complete=json.loads(item["onCompleteJson"]["S"]) if "onCompleteJson" in item else None,
        on_complete_job_id=text("onCompleteJobId"),
    )
