"""The job vocabulary: statuses, the record a client sees, and the message that travels through SQS."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

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
        return body


class JobMessage(BaseModel):
    """What the queue carries: a pointer to the record, never the payload (the record is the truth)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    tenant: str = Field(min_length=1)
    job_id: str = Field(alias="jobId", min_length=1)

    def to_body(self) -> str:
        return self.model_dump_json(by_alias=True)
