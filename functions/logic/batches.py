"""Fan-out batches: ``POST /jobs/batch`` creates up to 100 children that share a batch id; when the last one is final
the batch is ``completed`` (or ``completed_with_failures``) and its ``onComplete`` job is enqueued, exactly once.

Creating (``create_batch``): every spec is validated first (all or nothing: one bad spec is a 400 naming
``jobs[i]``); with an idempotency key, the key is claimed next (see ``create_batch``); then the children's records
are written (each with its batch id and its sweep mark, in transactions of at most 99, each stored whole or not at
all); then the batch item (``total``, ``jobIds``, the onComplete spec) with one
UpdateItem that returns the item as it now is; then the children's messages are sent (or left to the sweeper).

Counting: the jobs repository moves the batch item's ``finished``/``unsuccessful`` counters in the same transaction
as a child's entering or leaving a final state, so they are exact whatever the interleaving.

Settling (``BatchSettler``): whoever sees ``finished >= total`` (the consumer after a child's final save, the
cancel route, a redelivered message finding its job final, or the producer itself) writes ``completedAt`` with
a condition that it is still missing, in the same transaction as the onComplete job's record. Only one such write
can succeed; a loser does nothing. The onComplete job's message goes out after the transaction; if that send fails
(or the process dies first) its sweep mark makes the sweeper send it, as for any accepted job.

A child retried after its batch completed moves the counters back, but the batch stays completed (``completedAt``
is set once): a batch is not reopened, and its onComplete job is not run again.

One module, a little over 400 lines: creating and settling share the batch record, its idempotency replay and the
onComplete spec, and read best as one protocol.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from functions.dal.batches import COMPLETED, COMPLETED_WITH_FAILURES, BatchRecord, BatchStore
from functions.dal.files import FileStore
from functions.dal.jobs_repository import IdempotencyClaim, JobsRepository
from functions.logic.clock import Clock, iso, system_clock
from functions.logic.enqueue import (
    EnqueueSettings,
    JobSpec,
    enqueue_settings,
    ensure_same_request,
    idempotency_key_option,
    new_job,
    parse_job_spec,
    request_fingerprint,
    send_when_due,
)
from functions.logic.lanes import JobQueue
from functions.logic.payloads import offload_if_large
from functions.models.bounds import MAX_BATCH_JOBS
from functions.models.errors import (
    ApiError,
    ConcurrentUpdate,
    IdempotencyKeyUsed,
    InvalidBody,
    InvalidOption,
    NotFound,
    StorageError,
    shown,
)
from functions.models.job import Job, JobStatus
from functions.models.requests import BatchBody
from functions.settings import Settings

logger = Logger(child=True)

BATCH_FIELDS = frozenset(BatchBody.model_fields)
# The onComplete spec is kept in the batch item (400 KB at most) until the batch completes.
ON_COMPLETE_PAYLOAD_MAX_BYTES = 64 * 1024
# In the onComplete job's payload, a string that is exactly this is replaced by the batch's id (at any depth), so
# the job can find its batch (GET /batches/{id}) whatever its payload model. Nothing else is added to the payload:
# payload models refuse unknown fields, and the job does not belong to the batch it follows (no batchId).
BATCH_ID_PLACEHOLDER = "$batchId"
_BATCH_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SETTLE_ATTEMPTS = 6


# --- the request ---


@dataclass(frozen=True)
class OnComplete:
    """The onComplete job as kept with the batch. Its time is counted from the batch's completion: ``delaySeconds``
    delays it after completion; ``runAt`` is an instant (one already past when the batch completes means now)."""

    spec: JobSpec  # run_at_ms: the runAt instant, or None
    delay_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.spec.type,
            "payload": self.spec.payload,
            "priority": self.spec.priority,
            "maxAttempts": self.spec.max_attempts,
            "delayMs": self.delay_ms,
        }
        optional = {
            "runAtMs": self.spec.run_at_ms,
            "timeoutSeconds": self.spec.timeout_seconds,
            "groupId": self.spec.group_id,
            "callbackUrl": self.spec.callback_url,
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OnComplete:
        # Already validated when the batch was created: taken as stored (a later deploy's stricter model does not
        # leave a batch unable to complete).
        spec = JobSpec(
            type=data["type"],
            payload=data["payload"],
            priority=data["priority"],
            max_attempts=data["maxAttempts"],
            timeout_seconds=data.get("timeoutSeconds"),
            run_at_ms=data.get("runAtMs"),
            group_id=data.get("groupId"),
            callback_url=data.get("callbackUrl"),
        )
        return cls(spec=spec, delay_ms=data.get("delayMs", 0))

    def job_spec(self, now: int) -> JobSpec:
        """The spec of the job to enqueue when the batch completes at ``now``."""
        run_at_ms = self.spec.run_at_ms
        if run_at_ms is None and self.delay_ms > 0:
            run_at_ms = now + self.delay_ms
        return replace(self.spec, run_at_ms=run_at_ms)


@dataclass(frozen=True)
class BatchRequest:
    specs: tuple[JobSpec, ...]
    on_complete: OnComplete | None = None


def parse_batch_request(
    body: Any, now_ms: int, batch_id: str, settings: Settings | None = None, tenant: str | None = None
) -> BatchRequest:
    """Validate every spec before anything is written; the first bad one is the error, naming where it is.
    ``settings`` and ``tenant``: what the specs are validated under, as ``parse_job_spec``'s."""
    if not isinstance(body, dict):
        raise InvalidBody('the body must be a JSON object: {"jobs": [job specs], "onComplete"?: job spec}')
    try:
        request = BatchBody.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
        if unknown:
            raise InvalidOption(
                f"unknown field(s): {', '.join(unknown)}", details={"allowed": sorted(BATCH_FIELDS)}
            ) from exc
        if any(err["loc"][:1] == ("jobs",) for err in errors):
            raise InvalidBody(f"'jobs' must be a list of 1 to {MAX_BATCH_JOBS} job specs") from exc
        idempotency_key_option(body, None)  # only the idempotency key is left to be wrong: it says how
        raise InvalidOption("'idempotencyKey' is not valid") from exc
    specs = tuple(_child_spec(spec, index, now_ms, settings, tenant) for index, spec in enumerate(request.jobs))
    on_complete = None
    if body.get("onComplete") is not None:
        on_complete = _on_complete(body["onComplete"], now_ms, batch_id, settings, tenant)
    return BatchRequest(specs=specs, on_complete=on_complete)


def _child_spec(body: Any, index: int, now_ms: int, settings: Settings | None, tenant: str | None) -> JobSpec:
    where = f"jobs[{index}]"
    return _spec_at(body, where, now_ms, {"at": where, "index": index}, settings, tenant)


def _on_complete(body: Any, now_ms: int, batch_id: str, settings: Settings | None, tenant: str | None) -> OnComplete:
    where = "onComplete"
    if isinstance(body, dict) and "payload" in body:
        body = {**body, "payload": _with_batch_id(body["payload"], batch_id)}
    spec = _spec_at(body, where, now_ms, {"at": where}, settings, tenant)
    size = len(json.dumps(spec.payload, separators=(",", ":")))
    if size > ON_COMPLETE_PAYLOAD_MAX_BYTES:
        raise InvalidOption(
            f"{where}: the payload is {size} bytes of JSON; at most {ON_COMPLETE_PAYLOAD_MAX_BYTES}",
            details={"at": where},
        )
    if "delaySeconds" in body:  # counted from the batch's completion, not from now
        delay_ms = spec.run_at_ms - now_ms if spec.run_at_ms is not None else 0
        return OnComplete(spec=replace(spec, run_at_ms=None), delay_ms=delay_ms)
    return OnComplete(spec=spec)


def _spec_at(
    body: Any, where: str, now_ms: int, details: dict[str, Any], settings: Settings | None, tenant: str | None
) -> JobSpec:
    if not isinstance(body, dict):
        raise InvalidBody(f"{where}: a job spec must be a JSON object (as for POST /jobs)", details=details)
    if "idempotencyKey" in body:
        raise InvalidOption(f"{where}: 'idempotencyKey' is not accepted in a batch", details=details)
    if "dependsOn" in body:
        # A job may depend on a batch's jobs (POST /jobs with their jobIds), not be one of them.
        raise InvalidOption(f"{where}: 'dependsOn' is not accepted in a batch", details=details)
    try:
        return parse_job_spec(body, now_ms, settings=settings, tenant=tenant)
    except ApiError as exc:
        # The same code as POST /jobs would answer, the message and details saying which spec it is.
        extra = {"details": exc.details} if exc.details is not None else {}
        raise type(exc)(f"{where}: {exc.message}", details={**details, **extra}) from exc


def _with_batch_id(value: Any, batch_id: str) -> Any:
    if value == BATCH_ID_PLACEHOLDER:
        return batch_id
    if isinstance(value, dict):
        return {key: _with_batch_id(item, batch_id) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_batch_id(item, batch_id) for item in value]
    return value


# --- creating ---


class AcceptedBatch(NamedTuple):
    batch: BatchRecord
    # True when an idempotency key named an earlier, identical request: ``batch`` is that request's batch.
    replayed: bool = False
    # Jobs this request stored: every child of a new batch, those still missing when it finished an earlier
    # request's batch, none for a plain replay.
    created: int = 0


def create_batch(
    body: Any,
    tenant: str,
    repo: JobsRepository,
    store: BatchStore,
    queue: JobQueue,
    settler: BatchSettler,
    clock: Clock,
    settings: EnqueueSettings,
    files: Callable[[], FileStore] | None = None,
    idempotency_header: str | None = None,
) -> AcceptedBatch:
    """Accept a batch (see the module's docstring for the order of the writes); returns the batch as written.

    With an idempotency key (the ``Idempotency-Key`` header or the ``idempotencyKey`` field) the key is claimed
    first, naming the batch's id. The same request again gets that batch; if the first request stopped before the
    batch item was written (or is still writing), this one finishes it: the children's ids derive from the batch's
    id, so the chunks already stored are recognised and skipped, and nothing is created twice."""
    now = clock()
    batch_id = str(uuid.uuid4())
    request = parse_batch_request(body, now, batch_id, settings.job_settings, tenant)
    key = idempotency_key_option(body, idempotency_header)  # a dict: parse_batch_request checked
    resuming = False
    if key is not None:
        fingerprint = request_fingerprint(body)
        claim = IdempotencyClaim(
            # Apart from POST /jobs's keys: a key names a batch or a job, and each route answers with its own kind.
            key=f"batch:{key}",
            fingerprint=fingerprint,
            target_id=batch_id,
            expires_at=now // 1000 + settings.idempotency_ttl_seconds,
            now=now // 1000,
        )
        try:
            repo.claim_idempotency(tenant, claim)
        except IdempotencyKeyUsed as used:
            ensure_same_request(used, fingerprint, "batchId")
            earlier = store.get(tenant, used.target_id)
            if earlier is not None and earlier.is_open:
                return AcceptedBatch(earlier, replayed=True)
            batch_id, resuming = used.target_id, True
            # Parsed again: its onComplete payload names this batch.
            request = parse_batch_request(body, now, batch_id, settings.job_settings, tenant)
    children = [
        offload_if_large(
            new_job(replace(spec, batch_id=batch_id), tenant, now, settings, job_id=child_id(batch_id, index)),
            files,
            settings.payload_inline_max_bytes,
        )
        for index, spec in enumerate(request.specs)
    ]
    # Children first: a crash before the batch item leaves ordinary jobs (swept and run), never a batch waiting for
    # children that do not exist. A crash between chunks leaves the first chunks' jobs the same way.
    # A keyed batch's chunks may be stored by a retry that arrived while this request was still writing (it found
    # the key claimed and no batch yet, so it resumed): ours then skips them, as theirs skips ours.
    created = repo.create_many(children, resume=key is not None)
    on_complete = request.on_complete.to_json() if request.on_complete else None
    batch = store.open(tenant, batch_id, [child.id for child in children], iso(now), on_complete)
    if batch.is_due:
        # Every child ended before the batch item was written (cancelled, or run after a sweeper's re-send): their
        # settlers found no total and left it to us (see BatchSettler.job_final).
        batch = settler.settle(batch)
    for child in children:
        # Resuming, some were sent already: a second message for a job is dropped by whichever consumer sees it
        # second (every transition is conditional on the record's version).
        send_when_due(queue, child, now)
    return AcceptedBatch(batch, replayed=resuming, created=created)


def child_id(batch_id: str, index: int) -> str:
    """The id of a batch's ``index``-th child: a UUID derived from the batch's, the same for a resumed request."""
    return str(uuid.uuid5(uuid.UUID(batch_id), str(index)))


# --- settling ---


class BatchSettler:
    def __init__(
        self,
        repo: JobsRepository,
        queue: JobQueue,
        settings: Settings,
        store: BatchStore,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repo = repo
        self._queue = queue
        self._settings = enqueue_settings(settings)
        self._store = store
        self._clock = clock
        self._sleep = sleep

    def job_final(self, job: Job) -> None:
        """Called once a job is final (and again if a redelivery finds it final): completes its batch if due.

        Raises StorageError if the batch could not be looked at or settled: the consumer then leaves the message,
        and its redelivery calls this again (the job is final by then), so the batch still completes."""
        if job.batch_id is None:
            return
        batch = self._store.get(job.tenant, job.batch_id)
        if batch is None or not batch.is_open:
            # The producer has not written the batch yet: only this child's counter ADD exists. Nothing is lost by
            # returning. The producer's UpdateItem (which sets total) and this child's final save (which ADDs to
            # finished) are single writes on the same item, so DynamoDB orders them; this read came after our
            # save and found no total, so the producer's write comes after our ADD, and the item it returns
            # (ALL_NEW) counts this child. If that makes finished >= total, the producer settles (create_batch).
            # If a later child finishes after the producer's write, that child sees total and settles. Either way
            # the last finisher, in DynamoDB's order, is seen by someone who settles.
            return
        self.settle(batch)

    def settle(self, batch: BatchRecord) -> BatchRecord:
        """Complete ``batch`` if it is due, at most once across every caller; returns the batch as it now is."""
        for attempt in range(_SETTLE_ATTEMPTS):
            if not batch.is_due:
                return batch
            now = self._clock()
            status = COMPLETED_WITH_FAILURES if batch.unsuccessful > 0 else COMPLETED
            follow_up = self._on_complete_job(batch, now)
            try:
                settled = self._store.settle(batch, status, iso(now), follow_up)
            except ConcurrentUpdate:
                # Two transactions met on the batch item at the same instant (DynamoDB cancels one or both):
                # back off a little and look again.
                self._sleep(0.02 * 2**attempt)
                settled = False
            if settled:
                logger.info(
                    "batch settled",
                    extra={"batch_id": batch.id, "status": status, "on_complete_job_id": follow_up and follow_up.id},
                )
                if follow_up is not None:
                    send_when_due(self._queue, follow_up, now)
                return replace(
                    batch,
                    status=status,
                    completed_at=iso(now),
                    on_complete_job_id=follow_up.id if follow_up else None,
                )
            # The condition failed: settled by someone else, or the counts moved since we read them.
            fresh = self._store.get(batch.tenant, batch.id)
            if fresh is None:  # pragma: no cover - batch items are never deleted
                return batch
            batch = fresh
        raise StorageError(f"batch {batch.id} could not be settled: its item kept changing")

    def _on_complete_job(self, batch: BatchRecord, now: int) -> Job | None:
        if batch.on_complete is None:
            return None
        spec = OnComplete.from_json(batch.on_complete).job_spec(now)
        return new_job(spec, batch.tenant, now, self._settings)


# --- reading ---


def batch_view(store: BatchStore, tenant: str, batch_id: str) -> dict[str, Any]:
    """GET /batches/{id}: the batch, with its children counted by their current status."""
    batch = store.get(tenant, batch_id) if _BATCH_ID.fullmatch(batch_id) else None
    if batch is None or not batch.is_open:
        raise NotFound(f"batch '{shown(batch_id)}' not found")
    counts = {status.value: 0 for status in JobStatus}
    for status in store.child_statuses(tenant, list(batch.job_ids)).values():
        counts[status.value] += 1
    body: dict[str, Any] = {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "counts": counts,
        "jobIds": list(batch.job_ids),
        "createdAt": batch.created_at,
        "completedAt": batch.completed_at,
    }
    if batch.on_complete is not None:
        body["onComplete"] = on_complete_view(batch)
    return body


def accepted_view(batch: BatchRecord) -> dict[str, Any]:
    """POST /jobs/batch's 202: the batch's id and its children's, in the order of the request."""
    body: dict[str, Any] = {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "jobIds": list(batch.job_ids),
        "createdAt": batch.created_at,
    }
    if batch.on_complete is not None:
        body["onComplete"] = on_complete_view(batch)
    return body


def on_complete_view(batch: BatchRecord) -> dict[str, Any]:
    view: dict[str, Any] = {"type": (batch.on_complete or {}).get("type")}
    if batch.on_complete_job_id is not None:
        view["jobId"] = batch.on_complete_job_id
    return view
