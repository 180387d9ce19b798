"""Accepting a job: validate the request, write the record, hand the message to SQS.

The record is written first and carries a sweep mark; if the process dies before the message is sent, the sweeper
sends it (see ``sweep.py``). So a 202 always means the job will reach a final state.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from functions.dal.files import FileStore
from functions.dal.job_queue import MAX_DELAY_SECONDS, JobQueue
from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock, ceil_seconds, iso
from functions.logic.job_types import get_job_type
from functions.logic.payloads import offload_if_large
from functions.models.errors import InvalidBody, InvalidMessage, InvalidOption, InvalidPayload, StorageError
from functions.models.job import HistoryEntry, Job, JobMessage, JobStatus

logger = Logger(child=True)

MAX_DELAY_OPTION_SECONDS = 31_536_000  # one year
ENQUEUE_FIELDS = frozenset({"type", "payload", "priority", "maxAttempts", "delaySeconds", "runAt"})


@dataclass(frozen=True)
class JobSpec:
    type: str
    payload: dict[str, Any]
    priority: int = 5
    max_attempts: int = 3
    run_at_ms: int | None = None


@dataclass(frozen=True)
class EnqueueSettings:
    pending_grace_seconds: int
    release_ahead_seconds: int
    # A payload whose JSON is larger goes to the files bucket; the record keeps a pointer (see payloads.py).
    payload_inline_max_bytes: int = 256 * 1024


def parse_job_spec(body: Any, now_ms: int) -> JobSpec:
    """Validate a POST /jobs body into a spec, raising the contract's error codes."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    job_type = get_job_type(body.get("type"))
    unknown = sorted(set(body) - ENQUEUE_FIELDS)
    if unknown:
        raise InvalidOption(f"unknown field(s): {', '.join(unknown)}", details={"allowed": sorted(ENQUEUE_FIELDS)})

    payload = body.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidPayload("'payload' must be a JSON object")
    validated = job_type.parse_payload(payload)

    priority = _int_option(body, "priority", 5, 1, 10)
    max_attempts = _int_option(body, "maxAttempts", 3, 1, 25)
    if "delaySeconds" in body and "runAt" in body:
        raise InvalidOption("give either 'delaySeconds' or 'runAt', not both")
    run_at_ms: int | None = None
    if "delaySeconds" in body:
        delay = _int_option(body, "delaySeconds", 0, 0, MAX_DELAY_OPTION_SECONDS)
        run_at_ms = now_ms + delay * 1000 if delay > 0 else None
    elif "runAt" in body:
        run_at_ms = _run_at_option(body["runAt"], now_ms)

    return JobSpec(
        type=job_type.name,
        payload=validated.model_dump(mode="json", by_alias=True),
        priority=priority,
        max_attempts=max_attempts,
        run_at_ms=run_at_ms,
    )


def parse_message_request(body: Any) -> JobSpec:
    """POST /enqueue (the task-queue seed): {"message": "..."} becomes a ``message`` job."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    error = "'message' must be a string of 1 to 500 characters (after trimming)"
    message = body.get("message")
    if not isinstance(message, str):
        raise InvalidMessage(error)
    try:
        # The same model the consumer applies, so what is accepted here is what can run.
        payload = get_job_type("message").parse_payload({"message": message})
    except InvalidPayload as exc:
        raise InvalidMessage(error, details=exc.details) from exc
    return JobSpec(type="message", payload=payload.model_dump(mode="json"))


def enqueue(
    spec: JobSpec,
    tenant: str,
    repo: JobsRepository,
    queue: JobQueue,
    clock: Clock,
    settings: EnqueueSettings,
    files: Callable[[], FileStore] | None = None,
) -> Job:
    now = clock()
    job_id = str(uuid.uuid4())
    delay_ms = (spec.run_at_ms - now) if spec.run_at_ms is not None else 0
    scheduled = delay_ms > 0
    status = JobStatus.SCHEDULED if scheduled else JobStatus.PENDING
    send_now = delay_ms <= MAX_DELAY_SECONDS * 1000
    if not scheduled:
        sweep_at_ms = now + settings.pending_grace_seconds * 1000
    elif send_now:
        # SQS holds the message until runAt; the sweeper only steps in if it never arrives.
        sweep_at_ms = now + delay_ms + settings.pending_grace_seconds * 1000
    else:
        sweep_at_ms = now + delay_ms - settings.release_ahead_seconds * 1000

    job = Job(
        id=job_id,
        tenant=tenant,
        type=spec.type,
        payload=spec.payload,
        status=status,
        priority=spec.priority,
        attempts=0,
        max_attempts=spec.max_attempts,
        created_at=iso(now),
        updated_at=iso(now),
        run_at=iso(now + delay_ms) if scheduled else None,
        history=(HistoryEntry(status=status, at=iso(now)),),
        sweep_at=iso(sweep_at_ms),
    )
    stored = offload_if_large(job, files, settings.payload_inline_max_bytes)
    repo.create(stored)
    if send_now:
        send_or_leave_to_sweeper(queue, stored, delay_seconds=ceil_seconds(delay_ms))
    # The caller sees the payload it sent, whichever way it is stored.
    return stored.model_copy(update={"payload": job.payload})


def send_or_leave_to_sweeper(queue: JobQueue, job: Job, delay_seconds: int = 0) -> None:
    """Send the job's message; on failure the record's sweep mark makes the sweeper send it later."""
    try:
        queue.send(JobMessage(tenant=job.tenant, jobId=job.id), delay_seconds=delay_seconds)
    except StorageError:
        logger.warning("message not sent; the sweeper will send it", extra={"job_id": job.id}, exc_info=True)


def _int_option(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    if name not in body:
        return default
    value = body[name]
    # bool is an int in Python, but true is not a priority.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))
    ):
        raise InvalidOption(f"'{name}' must be an integer from {low} to {high}")
    if not low <= value <= high:
        raise InvalidOption(f"'{name}' must be an integer from {low} to {high}")
    return int(value)


def _run_at_option(value: Any, now_ms: int) -> int | None:
    message = "'runAt' must be an ISO-8601 timestamp with a UTC offset, at most one year ahead"
    if not isinstance(value, str):
        raise InvalidOption(message)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidOption(message) from exc
    if parsed.tzinfo is None:
        raise InvalidOption(message)
    run_at_ms = int(parsed.timestamp() * 1000)
    if run_at_ms - now_ms > MAX_DELAY_OPTION_SECONDS * 1000:
        raise InvalidOption(message)
    return run_at_ms if run_at_ms > now_ms else None  # the past means now
