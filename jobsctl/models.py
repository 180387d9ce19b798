"""The API's objects as typed, immutable models (camelCase on the wire, snake_case in Python)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from functions.models.bounds import MAX_ATTEMPTS_DEFAULT, PRIORITY_DEFAULT

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
STATUSES = ("scheduled", "waiting", "pending", "processing", "retrying", "completed", "failed", "cancelled")


class _ApiModel(BaseModel):
    # Unknown fields are kept (a newer server may add some); frozen so results can be shared between threads.
    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel, extra="allow")


class HistoryEntry(_ApiModel):
    status: str
    at: str
    attempt: int | None = None
    error: str | None = None


class Job(_ApiModel):
    id: str
    type: str
    status: str
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = PRIORITY_DEFAULT
    attempts: int = 0
    max_attempts: int = MAX_ATTEMPTS_DEFAULT
    timeout_seconds: int | None = None
    created_at: str = ""
    updated_at: str = ""
    run_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    result: Any = None
    error: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    group_id: str | None = None
    batch_id: str | None = None
    idempotency_key: str | None = None
    # {"percent", "message", "at"} and {"url", "status", "attempts", ...} as the API shows them.
    progress: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    # dependsOn: the jobs it waits for, and how many of them are not completed yet.
    depends_on: tuple[str, ...] = ()
    waiting_on: int | None = None
    # The recurring schedule that enqueued it, if any.
    schedule_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class JobPage(_ApiModel):
    jobs: tuple[Job, ...] = ()
    count: int = 0
    next_cursor: str | None = None


class Stats(_ApiModel):
    enqueued: int = 0
    processed: int = 0
    total: int = 0
    scheduled: int = 0
    pending: int = 0
    processing: int = 0
    retrying: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting: int = 0
    completion_rate: float = 0.0
    failure_rate: float = 0.0


class Schedule(_ApiModel):
    """A recurring schedule: ``job`` is enqueued at each time ``cron`` names in ``timezone``."""

    id: str
    name: str
    cron: str
    timezone: str = "UTC"
    job: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    next_run_at: str | None = None
    last_run_at: str | None = None
    last_job_id: str | None = None
    created_at: str = ""
    updated_at: str = ""
    last_error: str | None = None


class SchedulePage(_ApiModel):
    schedules: tuple[Schedule, ...] = ()
    count: int = 0
    next_cursor: str | None = None
