"""A recurring schedule: a cron expression in a time zone, and the job it enqueues at each run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NAME_MESSAGE = "'name' must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"
# A schedule's job is kept whole in its item (DynamoDB's limit is 400 KB) and enqueued by the sweeper, which keeps
# no payload in S3: its JSON is at most this large.
JOB_MAX_BYTES = 256 * 1024
# What the request bodies may hold.
CREATE_FIELDS = ("name", "cron", "timezone", "job", "enabled")
UPDATE_FIELDS = ("cron", "timezone", "job", "enabled")
# Options of POST /jobs a schedule's job may not have: the schedule decides when, and it keys its own runs.
REFUSED_JOB_FIELDS = ("delaySeconds", "runAt", "idempotencyKey")


class Schedule(BaseModel):
    """A schedule as stored and as the API shows it (camelCase on the wire; times are ISO UTC)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    tenant: str = Field(exclude=True)
    name: str = Field(pattern=NAME_PATTERN)
    cron: str
    timezone: str
    job: dict[str, Any] = Field(description="The job spec each run enqueues, as POST /jobs takes it")
    enabled: bool
    next_run_at: str | None = Field(
        alias="nextRunAt", description="The next run (null while disabled); runs are to the minute"
    )
    last_run_at: str | None = Field(default=None, alias="lastRunAt", description="The due time of the last run")
    last_job_id: str | None = Field(default=None, alias="lastJobId", description="The job the last run enqueued")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    last_error: str | None = Field(
        default=None,
        alias="lastError",
        description="Why the last run could not enqueue its job (absent otherwise); the cadence goes on",
    )
    version: int = Field(default=0, exclude=True)

    def to_api(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", by_alias=True)
        if body.get("lastError") is None:
            body.pop("lastError", None)
        return body


class SchedulePage(BaseModel):
    """A page of schedules, oldest first; pass ``nextCursor`` as ``cursor`` for the next page (null on the last)."""

    model_config = ConfigDict(defer_build=True)

    schedules: list[Schedule]
    count: int
    nextCursor: str | None


class RunTimes(BaseModel):
    """The next run times of a cron expression in a time zone (ISO UTC)."""

    model_config = ConfigDict(defer_build=True)

    runs: list[str]
