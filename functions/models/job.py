"""The job vocabulary: statuses, the record a client sees, and the message that travels through SQS."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
CANCELLABLE_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.RETRYING})
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


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
    # Bookkeeping that never leaves the service.
    version: int = Field(default=0, exclude=True)
    lease_until_ms: int | None = Field(default=None, exclude=True)
    next_attempt_at_ms: int | None = Field(default=None, exclude=True)
    # Set while the job waits for the sweeper: a scheduled job to be released, or a pending job whose message
    # must be re-sent if the consumer has not picked it up by then (closes the write-then-send gap).
    sweep_at: str | None = Field(default=None, exclude=True)
    # Set when the payload is too large for the record: its key in the files bucket (``payload`` is a placeholder).
    payload_ref: str | None = Field(default=None, exclude=True)

    def to_api(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", by_alias=True)
        body["history"] = [entry.to_json() for entry in self.history]
        for optional in ("groupId", "batchId", "idempotencyKey", "progress", "callback"):
            if body.get(optional) is None:
                body.pop(optional, None)
        if body.get("callback"):
            body["callback"] = {k: v for k, v in body["callback"].items() if v is not None}
        return body


class JobMessage(BaseModel):
    """What the queue carries: a pointer to the record, never the payload (the record is the truth)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    tenant: str = Field(min_length=1)
    job_id: str = Field(alias="jobId", min_length=1)
    # "run": run the job; "callback": deliver its completion callback (the job is already final).
    kind: Literal["run", "callback"] = "run"

    def to_body(self) -> str:
        # A run message keeps the foundation's shape, so messages already queued and new ones look alike.
        return self.model_dump_json(by_alias=True, exclude={"kind"} if self.kind == "run" else None)
