"""Large payloads, the SQS extended-client pattern applied to the job record.

SQS only ever carries ``{tenant, jobId}``; the payload lives on the DynamoDB record, whose items are capped at 400 KB.
A payload whose JSON is larger than ``payload_inline_max_bytes`` is written to ``payloads/<tenant>/<job id>.json``
in the files bucket and the record keeps a pointer (``payload_ref``) and a small placeholder. The consumer loads
the payload before validating and running it, and ``GET /jobs/{id}`` returns it whole; listings show the placeholder
(a page of fifty 5 MiB payloads would exceed Lambda's response limit). The bucket's lifecycle expires the objects
``payload_retention_days`` after they were written, so a job with an offloaded payload may not be scheduled so far
ahead that its payload would expire before its last attempt: such a request is refused (``INVALID_OPTION``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from functions.dal.files import PAYLOADS_PREFIX, FileStore
from functions.logic.clock import parse_iso_ms
from functions.models.errors import FileNotFound, InvalidOption, StorageError
from functions.models.job import Job
from functions.settings import Settings

OFFLOADED_MARK = "$offloaded"
CONTENT_TYPE = "application/json"
# Left between a scheduled job's start and its payload's expiry: enough for every attempt, backoff and backlog
# (25 attempts of a minute with 5-minute backoffs take ~2.5 h) and for the sweeper to settle a lost message.
RUN_MARGIN_DAYS = 2
_DAY_MS = 86_400_000


def payload_key(tenant: str, job_id: str) -> str:
    return f"{PAYLOADS_PREFIX}{tenant}/{job_id}.json"


def placeholder(size: int) -> dict[str, Any]:
    """What an offloaded record's ``payload`` holds: a mark and the payload's size in bytes."""
    return {OFFLOADED_MARK: True, "bytes": size}


def max_schedule_days(retention_days: int) -> int:
    """How far ahead (days) a job with an offloaded payload may be scheduled."""
    return max(0, retention_days - RUN_MARGIN_DAYS)


def offload_if_large(
    job: Job,
    files: Callable[[], FileStore] | None,
    inline_max_bytes: int,
    retention_days: int = Settings.payload_retention_days,
) -> Job:
    """The record to store for ``job``: unchanged, or with its payload in S3 and a pointer in its place.

    ``files`` gives the store on demand, so that small payloads (nearly all) never build an S3 client. A job
    scheduled further ahead than its offloaded payload would live is refused before anything is written."""
    data = json.dumps(job.payload, separators=(",", ":")).encode()
    if len(data) <= inline_max_bytes:
        return job
    ensure_payload_outlives_schedule(job, len(data), inline_max_bytes, retention_days)
    if files is None:
        raise StorageError("a large payload needs the files bucket, and none is configured")
    key = payload_key(job.tenant, job.id)
    # Written before the record: a crash in between leaves an orphan object (expired by the lifecycle), never a
    # record pointing at nothing.
    files().put_bytes(key, data, CONTENT_TYPE)
    return job.model_copy(update={"payload": placeholder(len(data)), "payload_ref": key})


def full_payload(job: Job, files: FileStore | None) -> dict[str, Any]:
    """The job's payload, read back from S3 when it was offloaded (``FileNotFound`` if the object is gone)."""
    if job.payload_ref is None:
        return job.payload
    if files is None:
        raise StorageError("the payload is in the files bucket, and none is configured")
    loaded = json.loads(files.get_bytes(job.payload_ref))
    if not isinstance(loaded, dict):
        raise StorageError(f"{job.payload_ref} does not hold a JSON object")
    return loaded


def with_full_payload(job: Job, files: FileStore | None) -> Job:
    """The record as ``GET /jobs/{id}`` shows it: the whole payload, or the placeholder once the object has expired."""
    if job.payload_ref is None:
        return job
    try:
        return job.model_copy(update={"payload": full_payload(job, files)})
    except FileNotFound:
        return job


def ensure_payload_outlives_schedule(job: Job, size: int, inline_max_bytes: int, retention_days: int) -> None:
    """``InvalidOption`` if ``job`` (whose payload of ``size`` bytes is offloaded) starts too late for its payload."""
    if job.run_at is None:
        return
    max_days = max_schedule_days(retention_days)
    if parse_iso_ms(job.run_at) - parse_iso_ms(job.created_at) <= max_days * _DAY_MS:
        return
    raise InvalidOption(
        f"'runAt' may be at most {max_days} days ahead for a payload over {inline_max_bytes} bytes "
        f"(this one is {size}): such payloads are kept for {retention_days} days",
        details={"maxDaysAhead": max_days, "payloadBytes": size, "inlineMaxBytes": inline_max_bytes},
    )
