"""A ``Job`` as a DynamoDB item of the jobs table and back (the low-level attribute-value shape boto3 speaks)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.dal.jobs_repository.keys import id_hash, record_key, status_partition
from functions.models.job import Callback, HistoryEntry, Job, JobCost, JobStatus, Progress


@dataclass(frozen=True)
class ItemLayout:
    """What an item's keys and expiry depend on besides the job: the table's shard counts and retention."""

    listing_shards: int
    sweep_shards: int
    # Final jobs carry ``expiresAt`` (DynamoDB TTL) this long after they ended; 0 keeps them forever.
    retention_seconds: int = 0


def to_item(job: Job, layout: ItemLayout) -> dict[str, Any]:
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
        "history": {"L": [{"M": history_item(entry)} for entry in job.history]},
    }
    for key_name, key_value in index_attributes(job, layout).items():
        item[key_name] = {"S": key_value}
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
        ("scheduleId", job.schedule_id),
    ):
        if text_value is not None:
            item[name] = {"S": text_value}
    if job.progress is not None:
        item["progressJson"] = {"S": job.progress.model_dump_json(by_alias=True)}
    if job.callback is not None:
        callback = job.callback.model_dump(mode="json", by_alias=True)
        callback["forVersion"] = job.callback.for_version
        item["callbackJson"] = {"S": json.dumps(callback, separators=(",", ":"))}
    if job.timeout_seconds is not None:
        item["timeoutSeconds"] = {"N": str(job.timeout_seconds)}
    if job.lease_until_ms is not None:
        item["leaseUntil"] = {"N": str(job.lease_until_ms)}
    if job.next_attempt_at_ms is not None:
        item["nextAttemptAt"] = {"N": str(job.next_attempt_at_ms)}
    if job.status.is_final and layout.retention_seconds:
        ended = datetime.fromisoformat(job.completed_at or job.updated_at).timestamp()
        item["expiresAt"] = {"N": str(int(ended) + layout.retention_seconds)}
    if job.depends_on:
        item["dependsOn"] = {"L": [{"S": dependency} for dependency in job.depends_on]}
    if job.waiting_on is not None:
        # Decremented in place as dependencies complete (functions/dal/dependencies.py), the version with it.
        item["waitingOn"] = {"N": str(job.waiting_on)}
    if job.cost is not None:
        item["costJson"] = {"S": job.cost.model_dump_json(by_alias=True)}
    return item


def index_attributes(job: Job, layout: ItemLayout) -> dict[str, str]:
    """The record's index key attributes: the listing indexes (newest first within a tenant, and by final status;
    each key in one of listing_shards) and the sweeper's sparse one (only jobs it must look at carry it)."""
    job_hash = id_hash(job.id)  # one hash for both shards (key_shard's)
    listing_shard = job_hash % layout.listing_shards
    keys = {"createdKey": f"{job.created_at}#{job.id}", "tenantKey": f"{job.tenant}#{listing_shard}"}
    keys |= _status_keys(job.tenant, job.status, listing_shard)
    if job.sweep_at is not None:
        keys |= {"sweepShard": str(job_hash % layout.sweep_shards), "sweepAt": job.sweep_at}
    return keys


def status_keys(tenant: str, job_id: str, status: JobStatus, layout: ItemLayout) -> dict[str, str]:
    """The key attributes of a job's record that follow its status (an update writing a status writes these; one
    it leaves out is absent from a record in that status)."""
    return _status_keys(tenant, status, id_hash(job_id) % layout.listing_shards)


def _status_keys(tenant: str, status: JobStatus, listing_shard: int) -> dict[str, str]:
    partition = status_partition(status)
    return {} if partition is None else {"tenantStatus": f"{tenant}#{partition}#{listing_shard}"}


def from_item(item: dict[str, Any]) -> Job:
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
        timeout_seconds=number("timeoutSeconds"),
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
        depends_on=tuple(entry["S"] for entry in item.get("dependsOn", {}).get("L", [])),
        waiting_on=number("waitingOn"),
        schedule_id=text("scheduleId"),
        cost=JobCost.model_validate_json(item["costJson"]["S"]) if "costJson" in item else None,
    )


def is_job_item(item: dict[str, Any]) -> bool:
    """A job record, not another item of the table (a batch, an idempotency claim)."""
    return "type" in item


def expired(item: dict[str, Any]) -> bool:
    """Past its ``expiresAt``: gone for the service, though DynamoDB's TTL sweep may not have removed it yet."""
    return "expiresAt" in item and int(item["expiresAt"]["N"]) <= time.time()


def _callback(text: str) -> Callback:
    data = json.loads(text)
    for_version = data.pop("forVersion", None)
    return Callback.model_validate(data).model_copy(update={"for_version": for_version})


def history_item(entry: HistoryEntry) -> dict[str, Any]:
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
