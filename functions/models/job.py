"""The job vocabulary: statuses and the moves between them, the record a client sees, and the message that travels
through SQS."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.models.errors import InvalidState


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Created with ``dependsOn``: waits until every dependency is completed (functions/logic/dependencies.py).
    WAITING = "waiting"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# Every move a job's status can make; the lifecycle methods of ``Job`` refuse any other (InvalidState: 409).
# Processing to processing is a redelivered message taking over an attempt whose consumer died (lease over).
ALLOWED_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType(
    {
        JobStatus.SCHEDULED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
        JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
        JobStatus.PROCESSING: frozenset(
            {JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.RETRYING, JobStatus.FAILED}
        ),
        # FAILED: the sweeper ends a retrying job whose message is gone for good (logic/sweep.py).
        JobStatus.RETRYING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
        JobStatus.COMPLETED: frozenset(),
        JobStatus.FAILED: frozenset({JobStatus.PENDING}),
        JobStatus.CANCELLED: frozenset({JobStatus.PENDING}),
        # Released when its last dependency completes; cancelled by hand or when a dependency fails or is cancelled.
        JobStatus.WAITING: frozenset({JobStatus.PENDING, JobStatus.CANCELLED}),
    }
)
CANCELLABLE_STATUSES = frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if JobStatus.CANCELLED in targets)
# What POST /jobs/{id}/retry takes: a final job back to pending (a waiting job's move to pending is its release).
RETRYABLE_STATUSES = frozenset(
    s for s, targets in ALLOWED_TRANSITIONS.items() if JobStatus.PENDING in targets and s.is_final
)


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    status: JobStatus
    at: str
    attempt: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Progress(BaseModel):
    """What a running job last reported about itself (``ctx.report_progress``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    percent: float
    message: str = ""
    at: str


class CallbackStatus(StrEnum):
    PENDING = "pending"  # the job is final; the signed POST is on its way (or being retried)
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed, or the URL was refused


class Callback(BaseModel):
    """The completion callback of a job (``callbackUrl``) and how its delivery went."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    url: str
    status: CallbackStatus | None = None  # None until the job is final
    attempts: int = 0
    last_error: str | None = Field(default=None, alias="lastError")
    delivered_at: str | None = Field(default=None, alias="deliveredAt")
    # The final status the pending delivery reports (a retried job can be final more than once).
    for_version: int | None = Field(default=None, exclude=True)


class JobCost(BaseModel):
    """What one job cost on AWS, estimated from its own measured calls and time (functions/logic/cost.py)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    usd: float = Field(description="US dollars at list prices (functions/models/prices.py)")
    requests: float = Field(description="Billed requests: gateway, Lambda invocations, SQS and DynamoDB calls")
    write_units: float = Field(alias="writeUnits", description="DynamoDB write request units, GSI entries included")
    read_units: float = Field(alias="readUnits", description="DynamoDB read request units")
    lambda_ms: float = Field(alias="lambdaMs", description="Lambda milliseconds spent on the job (API + consumer)")


class Job(BaseModel):
    """A job as stored and as returned by the API (camelCase on the wire)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=None)

    id: str
    tenant: str = Field(exclude=True)
    type: str
    payload: dict[str, Any]
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int = Field(alias="maxAttempts")
    # How long one attempt may run (``timeoutSeconds``); None: as long as the consumer's invocation has left.
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    run_at: str | None = Field(default=None, alias="runAt")
    started_at: str | None = Field(default=None, alias="startedAt")
    completed_at: str | None = Field(default=None, alias="completedAt")
    result: Any = None
    error: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    # Flow control: the ordered group, the fan-out batch, the caller's idempotency key, progress, the callback.
    group_id: str | None = Field(default=None, alias="groupId")
    batch_id: str | None = Field(default=None, alias="batchId")
    idempotency_key: str | None = Field(default=None, alias="idempotencyKey")
    progress: Progress | None = None
    callback: Callback | None = None
    # The recurring schedule that enqueued it (absent otherwise).
    schedule_id: str | None = Field(default=None, alias="scheduleId")
    # What the job cost: the API's part from its creation, the consumer's added at the final transition.
    cost: JobCost | None = None
    # Bookkeeping that never leaves the service.
    version: int = Field(default=0, exclude=True)
    lease_until_ms: int | None = Field(default=None, exclude=True)
    next_attempt_at_ms: int | None = Field(default=None, exclude=True)
    # Set while the job waits for the sweeper: a scheduled job to be released, or a pending job whose message
    # must be re-sent if the consumer has not picked it up by then (closes the write-then-send gap).
    sweep_at: str | None = Field(default=None, exclude=True)
    # Set when the payload is too large for the record: its key in the files bucket (``payload`` is a placeholder).
    payload_ref: str | None = Field(default=None, exclude=True)
    # Dependencies (``dependsOn``): the jobs this one waits for, and how many of them are not completed yet.
    depends_on: tuple[str, ...] = Field(default=(), alias="dependsOn")
    waiting_on: int | None = Field(default=None, alias="waitingOn")

    # --- the lifecycle: each method returns the job after the move, its history entries appended ---

    def start(self, at: str, lease_until_ms: int) -> Job:
        """Claim the next attempt, held until ``lease_until_ms`` (past it, a redelivery may take over)."""
        self._check(JobStatus.PROCESSING, f"a {self.status.value} job cannot be started")
        entries: list[HistoryEntry] = []
        if self.status == JobStatus.SCHEDULED:
            entries.append(HistoryEntry(status=JobStatus.PENDING, at=at))
        elif self.status == JobStatus.PROCESSING:
            error = f"attempt {self.attempts} did not finish (consumer stopped or timed out)"
            entries.append(HistoryEntry(status=JobStatus.RETRYING, at=at, attempt=self.attempts, error=error))
        attempt = self.attempts + 1
        entries.append(HistoryEntry(status=JobStatus.PROCESSING, at=at, attempt=attempt))
        return self._moved(
            *entries,
            attempts=attempt,
            started_at=at,
            lease_until_ms=lease_until_ms,
            next_attempt_at_ms=None,
            sweep_at=None,
        )

    def complete(self, at: str, result: Any, progress: Progress | None = None) -> Job:
        """The attempt succeeded with ``result``; ``progress`` is the last it reported (None keeps the record's)."""
        self._check(JobStatus.COMPLETED, f"a {self.status.value} job cannot be completed")
        return self._moved(
            HistoryEntry(status=JobStatus.COMPLETED, at=at, attempt=self.attempts),
            result=result,
            error=None,
            completed_at=at,
            lease_until_ms=None,
            progress=progress or self.progress,
        )

    def retry_later(self, at: str, error: str, next_attempt_at_ms: int, progress: Progress | None = None) -> Job:
        """The attempt failed and another is due at ``next_attempt_at_ms``."""
        self._check(JobStatus.RETRYING, f"a {self.status.value} job cannot be retried later")
        if self.attempts >= self.max_attempts:
            raise InvalidState(f"attempt {self.attempts} of {self.max_attempts} was the last")
        return self._moved(
            HistoryEntry(status=JobStatus.RETRYING, at=at, attempt=self.attempts, error=error),
            error=error,
            lease_until_ms=None,
            next_attempt_at_ms=next_attempt_at_ms,
            progress=progress or self.progress,
        )

    def fail(self, at: str, error: str, progress: Progress | None = None) -> Job:
        """The attempt failed for good (a permanent error, or the last attempt)."""
        self._check(JobStatus.FAILED, f"a {self.status.value} job cannot fail")
        return self._moved(
            HistoryEntry(status=JobStatus.FAILED, at=at, attempt=self.attempts, error=error),
            error=error,
            completed_at=at,
            lease_until_ms=None,
            progress=progress or self.progress,
        )

    def cancel(self, at: str, error: str | None = None) -> Job:
        """Cancel a job that has not started (a queued message is dropped by the consumer when it arrives);
        ``error`` says why when it was not asked for (a dependency failed)."""
        self._check(JobStatus.CANCELLED, f"a {self.status.value} job cannot be cancelled")
        entry = HistoryEntry(status=JobStatus.CANCELLED, at=at, error=error)
        changes: dict[str, Any] = {"error": error} if error is not None else {}
        return self._moved(entry, completed_at=at, sweep_at=None, next_attempt_at_ms=None, **changes)

    def release(self, at: str, sweep_at: str) -> Job:
        """A waiting job's dependencies are all completed: pending, its message to be sent (the sweeper sends it
        after ``sweep_at`` if it was not)."""
        if self.status != JobStatus.WAITING:
            raise InvalidState(f"only waiting jobs are released, this one is {self.status.value}")
        return self._moved(HistoryEntry(status=JobStatus.PENDING, at=at), waiting_on=0, sweep_at=sweep_at)

    def reset(self, at: str, sweep_at: str) -> Job:
        """Run a failed or cancelled job again from its first attempt; the sweeper re-sends its message after
        ``sweep_at`` if it was not sent. Its callback waits for the next final state."""
        if self.status not in RETRYABLE_STATUSES:
            raise InvalidState(f"only failed or cancelled jobs can be retried, this one is {self.status.value}")
        return self._moved(
            HistoryEntry(status=JobStatus.PENDING, at=at),
            attempts=0,
            started_at=None,
            completed_at=None,
            result=None,
            error=None,
            run_at=None,
            lease_until_ms=None,
            next_attempt_at_ms=None,
            callback=Callback(url=self.callback.url) if self.callback else None,
            sweep_at=sweep_at,
        )

    def _check(self, target: JobStatus, refusal: str) -> None:
        if target not in ALLOWED_TRANSITIONS[self.status]:
            raise InvalidState(refusal)

    def _moved(self, *entries: HistoryEntry, **changes: Any) -> Job:
        """This job in the status of the last entry, updated at its time, with ``changes`` and the entries."""
        last = entries[-1]
        update = {"status": last.status, "updated_at": last.at, "history": (*self.history, *entries), **changes}
        return self.model_copy(update=update)

    def to_api(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", by_alias=True)
        body["history"] = [entry.to_json() for entry in self.history]
        for optional in (
            "timeoutSeconds",
            "groupId",
            "batchId",
            "idempotencyKey",
            "progress",
            "callback",
            "waitingOn",
            "scheduleId",
            "cost",
        ):
            if body.get(optional) is None:
                body.pop(optional, None)
        if self.depends_on:
            body["dependsOn"] = list(self.depends_on)
        else:
            body.pop("dependsOn", None)
        if body.get("callback"):
            body["callback"] = {k: v for k, v in body["callback"].items() if v is not None}
        if self.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
            body.pop("cost", None)  # the API's part alone until the consumer adds its own at the end
        return body


class JobMessage(BaseModel):
    """What the queue carries: a pointer to the record, never the payload (the record is the truth)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    tenant: str = Field(min_length=1)
    job_id: str = Field(alias="jobId", min_length=1)
    # "run": run the job; "callback": deliver its completion callback (the job is already final).
    kind: Literal["run", "callback"] = "run"
    # The job's type, when the sender knew it: lets the consumer check the type's pauses and limits before it claims
    # the job in one conditional write, without reading the record first (the write checks the type too).
    type: str | None = Field(default=None, min_length=1)

    def to_body(self) -> str:
        # A run message leaves ``kind`` out, so messages queued by earlier versions and new ones look alike.
        exclude = {"kind"} if self.kind == "run" else set()
        if self.type is None:
            exclude.add("type")
        return self.model_dump_json(by_alias=True, exclude=exclude or None)
