"""Accepting a job: validate the request, write the record, hand the message to SQS.

The record is written first and carries a sweep mark; if the process dies before the message is sent, the sweeper
sends it (see ``sweep.py``). So a 202 always means the job will reach a final state.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger
from pydantic import TypeAdapter, ValidationError

from functions.dal.files import FileStore
from functions.dal.job_queue import MAX_DELAY_SECONDS
from functions.dal.jobs_repository import IdempotencyClaim, JobsRepository
from functions.logic import cost as job_cost
from functions.logic.clock import Clock, ceil_seconds, epoch_ms, iso, parse_iso_ms
from functions.logic.job_types import get_job_type
from functions.logic.lanes import JobQueue
from functions.logic.payloads import offload_if_large
from functions.models.bounds import (
    CALLBACK_URL_MAX_LENGTH,
    DELAY_SECONDS_MAX,
    DEPENDS_ON_MAX,
    GROUP_ID_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX,
    MAX_ATTEMPTS_MIN,
    MESSAGE_MAX_LENGTH,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_SECONDS_MAX,
    TIMEOUT_SECONDS_MIN,
)
from functions.models.errors import (
    ApiError,
    IdempotencyConflict,
    IdempotencyKeyUsed,
    InvalidBody,
    InvalidMessage,
    InvalidOption,
    InvalidPayload,
    NotFound,
    StorageError,
)
from functions.models.job import Callback, HistoryEntry, Job, JobMessage, JobStatus
from functions.models.requests import (
    BOTH_TIMES_MESSAGE,
    RUN_AT_MESSAGE,
    IdempotencyKey,
    JobRequest,
    MessageRequest,
)
from functions.settings import Settings

logger = Logger(child=True)

_IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)
# The fields of POST /jobs's body (and, without idempotencyKey, of a batch's job spec).
ENQUEUE_FIELDS = frozenset(JobRequest.model_fields)


@dataclass(frozen=True)
class JobSpec:
    type: str
    payload: dict[str, Any]
    priority: int = PRIORITY_DEFAULT
    max_attempts: int = MAX_ATTEMPTS_DEFAULT
    # How long one attempt may run; None: as long as the consumer's invocation has left.
    timeout_seconds: int | None = None
    run_at_ms: int | None = None
    group_id: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    # What "the same body" means for an idempotency key: a hash of the request as sent, without the key.
    fingerprint: str = field(default="", compare=False)
    batch_id: str | None = None
    # The jobs it waits for (``dependsOn``, each once, in the order given): see logic/dependencies.py.
    depends_on: tuple[str, ...] = ()
    # The recurring schedule that enqueued it (logic/schedules.py), if any.
    schedule_id: str | None = None


@dataclass(frozen=True)
class EnqueueSettings:
    pending_grace_seconds: int
    release_ahead_seconds: int
    # A payload whose JSON is larger goes to the files bucket; the record keeps a pointer (see payloads.py).
    payload_inline_max_bytes: int = 256 * 1024
    idempotency_ttl_seconds: int = 86_400
    # What batches and webhooks validate payloads under (``parse_job_spec``'s ``settings``): the functions' own.
    job_settings: Settings = field(default_factory=Settings)


def enqueue_settings(settings: Settings) -> EnqueueSettings:
    """The one way to build ``EnqueueSettings`` from the functions' settings (API routes, webhooks, batches)."""
    return EnqueueSettings(
        settings.pending_grace_seconds,
        settings.release_ahead_seconds,
        settings.payload_inline_max_bytes,
        settings.idempotency_ttl_seconds,
        job_settings=settings,
    )


class Accepted(NamedTuple):
    job: Job
    # True when an idempotency key named an earlier, identical request: ``job`` is that request's job.
    replayed: bool = False


def parse_job_spec(
    body: Any,
    now_ms: int,
    idempotency_header: str | None = None,
    settings: Settings | None = None,
    tenant: str | None = None,
) -> JobSpec:
    """Validate a POST /jobs body (``JobRequest``, then the type's payload model) into a spec, raising the contract's
    error codes: ``INVALID_TYPE``, then unknown fields, then the payload, then the other options.

    ``idempotency_header``: the ``Idempotency-Key`` header, an alternative to the ``idempotencyKey`` field.
    ``settings``: the functions' settings, which say what this deployment runs (a type it cannot run, a model it
    does not allow, are refused here) and its limits; the defaults without.
    ``tenant``: the caller's, for payload checks that depend on it (an upload key under another tenant)."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    job_type = get_job_type(body.get("type"))
    request, option_errors = _validate_request(body)
    validated = job_type.parse_payload(body.get("payload") or {}, settings, at_enqueue=True, tenant=tenant)
    if option_errors:
        raise option_errors[0]
    assert request is not None  # no errors: the model validated
    run_at_ms: int | None = None
    if "delaySeconds" in request.model_fields_set:
        run_at_ms = now_ms + request.delaySeconds * 1000 if request.delaySeconds > 0 else None
    else:
        run_at_ms = _run_at(request.run_at(), now_ms)
    callback_url = _callback_url(request.callbackUrl)
    if "dependsOn" in request.model_fields_set and {"delaySeconds", "runAt"} & request.model_fields_set:
        raise InvalidOption(DEPENDS_ON_TIME_MESSAGE)
    idempotency_key = idempotency_key_option(body, idempotency_header)
    return JobSpec(
        type=job_type.name,
        payload=validated.model_dump(mode="json", by_alias=True),
        priority=request.priority,
        max_attempts=request.maxAttempts,
        timeout_seconds=request.timeoutSeconds,
        run_at_ms=run_at_ms,
        group_id=request.groupId,
        callback_url=callback_url,
        idempotency_key=idempotency_key,
        # Only a keyed request is ever compared with another one.
        fingerprint=request_fingerprint(body) if idempotency_key else "",
        depends_on=tuple(dict.fromkeys(request.dependsOn or ())),
    )


# What an option's error says, by field (pydantic's own message for the rest).
_OPTION_MESSAGES = {
    "priority": f"'priority' must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}",
    "maxAttempts": f"'maxAttempts' must be an integer from {MAX_ATTEMPTS_MIN} to {MAX_ATTEMPTS_MAX}",
    "timeoutSeconds": f"'timeoutSeconds' must be an integer from {TIMEOUT_SECONDS_MIN} to {TIMEOUT_SECONDS_MAX}",
    "delaySeconds": f"'delaySeconds' must be an integer from 0 to {DELAY_SECONDS_MAX}",
    "runAt": RUN_AT_MESSAGE,
    "groupId": f"'groupId' must be 1 to {GROUP_ID_MAX_LENGTH} printable ASCII characters without spaces",
    "idempotencyKey": f"'idempotencyKey' must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters "
    "without spaces",
    "callbackUrl": f"'callbackUrl' must be an http(s) URL of at most {CALLBACK_URL_MAX_LENGTH} characters",
    "dependsOn": f"'dependsOn' must be a list of 1 to {DEPENDS_ON_MAX} job ids",
}
DEPENDS_ON_TIME_MESSAGE = "'dependsOn' cannot be combined with 'delaySeconds' or 'runAt'"
_REQUEST_FIELDS = sorted(ENQUEUE_FIELDS)


def _validate_request(body: dict[str, Any]) -> tuple[JobRequest | None, list[ApiError]]:
    """``JobRequest`` applied to ``body``: unknown fields and a payload that is not an object are raised at once;
    the other options' errors are returned, to be raised after the payload's (the order the codes take)."""
    try:
        return JobRequest.model_validate(body), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
    if unknown:
        raise InvalidOption(f"unknown field(s): {', '.join(unknown)}", details={"allowed": _REQUEST_FIELDS})
    if any(err["loc"][:1] == ("payload",) for err in errors):
        raise InvalidPayload("'payload' must be a JSON object")
    found: list[ApiError] = []
    for err in errors:
        name = str(err["loc"][0]) if err["loc"] else ""
        found.append(InvalidOption(_OPTION_MESSAGES.get(name, BOTH_TIMES_MESSAGE if not name else err["msg"])))
    return None, found


def request_fingerprint(body: dict[str, Any]) -> str:
    """The same request sent again hashes the same, whatever its key order or whitespace."""
    canonical = json.dumps(
        {name: value for name, value in body.items() if name != "idempotencyKey"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def idempotency_key_option(body: dict[str, Any], header: str | None) -> str | None:
    """The request's idempotency key: the ``idempotencyKey`` field or the ``Idempotency-Key`` header (the same if
    both are given)."""
    field_key = _idempotency_key(body.get("idempotencyKey"), "idempotencyKey")
    header_key = _idempotency_key(header, "Idempotency-Key")
    if field_key is not None and header_key is not None and field_key != header_key:
        # A conflict between two keys of one request (409, as for a key reused with another request): each key
        # alone is valid, which is all the document can say about two independent parameters.
        raise IdempotencyConflict("the 'Idempotency-Key' header and the 'idempotencyKey' field differ")
    return field_key or header_key


def _idempotency_key(value: Any, name: str) -> str | None:
    if value is None:
        return None
    try:
        return _IDEMPOTENCY_KEY.validate_python(value, strict=True)
    except ValidationError as exc:
        message = f"'{name}' must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters without spaces"
        raise InvalidOption(message) from exc


def _callback_url(value: str | None) -> str | None:
    if value is None:
        return None
    from functions.adapters.net import InvalidUrl, check_url  # the outbound policy: loaded by the first callback

    try:
        check_url(value.strip())
    except InvalidUrl as exc:
        raise InvalidOption(f"'callbackUrl': {exc.message}") from exc
    return value.strip()


def _run_at(run_at: datetime | None, now_ms: int) -> int | None:
    if run_at is None:
        return None
    run_at_ms = epoch_ms(run_at)
    if run_at_ms - now_ms > DELAY_SECONDS_MAX * 1000:
        raise InvalidOption(RUN_AT_MESSAGE)
    return run_at_ms if run_at_ms > now_ms else None  # the past means now


def parse_message_request(body: Any) -> JobSpec:
    """POST /enqueue: ``{"message": "..."}`` (``MessageRequest``) becomes a ``message`` job."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    error = f"'message' must be a string of 1 to {MESSAGE_MAX_LENGTH} characters (after trimming)"
    try:
        message = MessageRequest.model_validate(body).message
    except ValidationError as exc:
        raise InvalidMessage(error) from exc
    try:
        # The same model the consumer applies, so what is accepted here is what can run.
        payload = get_job_type("message").parse_payload({"message": message})
    except InvalidPayload as exc:
        raise InvalidMessage(error, details=exc.details) from exc
    return JobSpec(type="message", payload=payload.model_dump(mode="json"))


def submit(
    spec: JobSpec,
    tenant: str,
    repo: JobsRepository,
    queue: JobQueue,
    clock: Clock,
    settings: EnqueueSettings,
    files: Callable[[], FileStore] | None = None,
    prepare: Callable[[Job], Job] | None = None,
) -> Accepted:
    """Accept a job; with an idempotency key, at most once per key (the same request again gets the same job).
    ``prepare``: given the new record before it is stored, returns the record to store (logic/dependencies.py)."""
    now = clock()
    job = new_job(spec, tenant, now, settings)
    if prepare is not None:
        job = prepare(job)
    stored = offload_if_large(job, files, settings.payload_inline_max_bytes)
    claim = None
    if spec.idempotency_key is not None:
        claim = IdempotencyClaim(
            key=spec.idempotency_key,
            fingerprint=spec.fingerprint,
            target_id=job.id,
            expires_at=now // 1000 + settings.idempotency_ttl_seconds,
            now=now // 1000,
        )
    stored = job_cost.record_create(stored, transactional=claim is not None, sends=_sends_now(stored, now))
    try:
        repo.create(stored, claim)
    except IdempotencyKeyUsed as used:
        return Accepted(_replay(repo, tenant, spec, used), replayed=True)
    if _sends_now(stored, now):
        send_or_leave_to_sweeper(queue, stored, delay_seconds=ceil_seconds(_delay_ms(stored, now)))
    # The caller sees the payload it sent, whichever way it is stored.
    return Accepted(stored.model_copy(update={"payload": job.payload}))


def ensure_same_request(used: IdempotencyKeyUsed, fingerprint: str, created: str) -> None:
    """``IdempotencyConflict`` unless the key's holder was this very request; ``created`` names what the holder
    created in the error's details (``jobId``, ``batchId``)."""
    if used.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request in the last 24 hours",
            details={created: used.target_id},
        )


def _replay(repo: JobsRepository, tenant: str, spec: JobSpec, used: IdempotencyKeyUsed) -> Job:
    ensure_same_request(used, spec.fingerprint, "jobId")
    original = repo.get(tenant, used.target_id)
    if original is None:  # its record expired before the key did
        raise NotFound(f"job '{used.target_id}' of this Idempotency-Key no longer exists")
    return original


def _delay_ms(job: Job, now: int) -> int:
    return max(0, parse_iso_ms(job.run_at) - now) if job.run_at else 0


def _sends_now(job: Job, now: int) -> bool:
    # A grouped job joins its group's line when it becomes due (FIFO queues have no per-message delay): a
    # scheduled one is sent by the sweeper at runAt. Others are sent now, SQS holding them up to 15 min.
    if job.status == JobStatus.SCHEDULED and job.group_id is not None:
        return False
    if job.status == JobStatus.WAITING:
        return False  # released (and sent) when its last dependency completes
    return _delay_ms(job, now) <= MAX_DELAY_SECONDS * 1000


def new_job(spec: JobSpec, tenant: str, now: int, settings: EnqueueSettings, job_id: str | None = None) -> Job:
    """The record of a job accepted at ``now``, with its sweep mark (see the module's docstring)."""
    job_id = job_id or str(uuid.uuid4())
    delay_ms = (spec.run_at_ms - now) if spec.run_at_ms is not None else 0
    scheduled = delay_ms > 0
    status = JobStatus.SCHEDULED if scheduled else JobStatus.PENDING
    send_now = delay_ms <= MAX_DELAY_SECONDS * 1000 and not (scheduled and spec.group_id is not None)
    if scheduled and spec.group_id is not None:
        sweep_at_ms = now + delay_ms  # released exactly when due (see _sends_now)
    elif not scheduled:
        sweep_at_ms = now + settings.pending_grace_seconds * 1000
    elif send_now:
        # SQS holds the message until runAt; the sweeper only steps in if it never arrives.
        sweep_at_ms = now + delay_ms + settings.pending_grace_seconds * 1000
    else:
        sweep_at_ms = now + delay_ms - settings.release_ahead_seconds * 1000

    return Job(
        id=job_id,
        tenant=tenant,
        type=spec.type,
        payload=spec.payload,
        status=status,
        priority=spec.priority,
        attempts=0,
        max_attempts=spec.max_attempts,
        timeout_seconds=spec.timeout_seconds,
        created_at=iso(now),
        updated_at=iso(now),
        run_at=iso(now + delay_ms) if scheduled else None,
        history=(HistoryEntry(status=status, at=iso(now)),),
        sweep_at=iso(sweep_at_ms),
        group_id=spec.group_id,
        batch_id=spec.batch_id,
        idempotency_key=spec.idempotency_key,
        callback=Callback(url=spec.callback_url) if spec.callback_url else None,
        schedule_id=spec.schedule_id,
    )


def send_when_due(queue: JobQueue, job: Job, now: int) -> None:
    """What ``submit`` does with a new record once it is stored: send its message now (SQS holding it until runAt
    when that is within 15 min) or leave it to the sweeper's mark (later jobs, scheduled grouped jobs)."""
    if _sends_now(job, now):
        send_or_leave_to_sweeper(queue, job, delay_seconds=ceil_seconds(_delay_ms(job, now)))


def send_or_leave_to_sweeper(queue: JobQueue, job: Job, delay_seconds: int = 0) -> None:
    """Send the job's message (to its lane); on failure the record's sweep mark makes the sweeper send it later."""
    try:
        queue.send(
            # The type lets the consumer claim a pending job without reading it first; a job in another status
            # (scheduled, or re-sent while in flight) would fail that claim's condition, which costs a write unit
            # where a read costs a fifth: its message leaves the type out, and the consumer reads the record.
            JobMessage(tenant=job.tenant, jobId=job.id, type=job.type if job.status == JobStatus.PENDING else None),
            delay_seconds=delay_seconds,
            priority=job.priority,
            group_id=job.group_id,
        )
    except StorageError:
        logger.warning("message not sent; the sweeper will send it", extra={"job_id": job.id}, exc_info=True)
