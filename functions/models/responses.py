"""The API's answers as pydantic models: what the OpenAPI document says each route returns.

A job is the domain's own ``functions.models.job.Job`` (``Job.to_api()`` is its wire form, and its serialization
schema is the document's ``Job``), so there is one contract for it; the shapes here have no domain model of their
own: pages, counts, tickets, batches and errors. The tests check that what the handlers return fits the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from functions.models.bounds import MAX_BATCH_JOBS
from functions.models.job import Job
from functions.models.schedules import RunTimes, Schedule, SchedulePage  # documented by name (routes/schedules.py)

__all__ = ["Job", "RunTimes", "Schedule", "SchedulePage"]


class WireModel(BaseModel):
    """The base of the models below. They only describe responses for the document (and the tests), so their
    validators are built on first use (``defer_build``) rather than at every cold start of the API."""

    model_config = ConfigDict(defer_build=True)


class Error(WireModel):
    """Every error the API answers: a message for people, a stable code for programs."""

    error: str
    code: str = Field(description="Stable; see the response's description for the codes of each route.")
    details: Any = Field(default=None, description="Present where useful: the payload's errors, the accepted values.")


class JobPage(WireModel):
    """A page of jobs, newest first; pass ``nextCursor`` as ``cursor`` for the next page (null on the last). A page
    may hold fewer than ``limit`` jobs, even none, and still have a next one: a page examines at most 1,000 entries."""

    jobs: list[Job] = Field(description="Listings show a stub payload for payloads kept in S3")
    count: int
    nextCursor: str | None


class StatusCounts(WireModel):
    """How many jobs are in each status."""

    scheduled: int
    pending: int
    processing: int
    retrying: int
    completed: int
    failed: int
    cancelled: int


class Stats(StatusCounts):
    """The tenant's jobs by status (exact counts), and its completion and failure rates over all its jobs."""

    waiting: int = Field(description="waiting for their dependencies (dependsOn) to complete")
    enqueued: int
    processed: int = Field(description="completed + failed")
    total: int
    completionRate: float = Field(ge=0, le=1)
    failureRate: float = Field(ge=0, le=1)


class ThroughputBucket(WireModel):
    minute: str = Field(description="The minute, UTC: 2026-11-23T14:05Z")
    completed: int
    failed: int


class Throughput(WireModel):
    """Jobs that completed and failed in each of the last ``minutes`` minutes, oldest first."""

    minutes: int
    buckets: list[ThroughputBucket]


class CostSums(WireModel):
    jobs: int = Field(description="Final jobs counted")
    usd: float = Field(description="Their estimated cost, US dollars")
    requests: float
    write_units: float = Field(alias="writeUnits")
    read_units: float = Field(alias="readUnits")
    lambda_ms: float = Field(alias="lambdaMs")


class CostByType(WireModel):
    """The ``cost`` of the tenant's jobs that ended in the last ``minutes`` minutes, summed by type."""

    minutes: int
    since: str = Field(description="The first minute counted, UTC: 2026-11-23T14:05Z")
    types: dict[str, CostSums]
    total: CostSums


class JobTypeInfo(WireModel):
    name: str
    schema_: dict[str, Any] = Field(alias="schema", description="The payload's JSON Schema")
    description: str
    paused: bool = Field(description="Paused for the caller's tenant (POST /types/{type}/pause)")


class TypePause(WireModel):
    """A job type's pause state for the caller's tenant."""

    type: str
    paused: bool


class CancelledJobs(WireModel):
    """How many jobs ``POST /jobs/cancel`` cancelled; ``more`` when there were more than one call looks at."""

    cancelled: int = Field(ge=0)
    more: Literal[True] | SkipJsonSchema[None] = Field(
        default=None, description="Present (true) when matching jobs were left: call again to cancel them"
    )


class JobTypes(WireModel):
    """The registered job types, by name, with their payloads' JSON Schemas."""

    types: list[JobTypeInfo]


class Health(WireModel):
    status: Literal["ok"]
    service: str
    timestamp: str


class Enqueued(WireModel):
    """``POST /enqueue``'s answer: the message job that was queued."""

    queued: Literal[True]
    id: str
    message: str
    enqueuedAt: str


class UploadTicket(WireModel):
    """Where to PUT the file: with exactly these headers, before ``expiresAt``; then name ``key`` in a job."""

    key: str = Field(description="Under uploads/<tenant>/; give it to an image job as its payload's key")
    uploadUrl: str
    method: Literal["PUT"]
    headers: dict[str, str]
    expiresAt: str


class FileResult(WireModel):
    """A completed job whose result names a file: a presigned GET for it."""

    url: str
    key: str
    expiresAt: str
    contentType: str | None = None


class InlineResult(WireModel):
    """A completed job whose result is a value."""

    result: Any


class BatchOnComplete(WireModel):
    """The job enqueued once every child is final; ``jobId`` appears when it has been enqueued."""

    type: str
    jobId: str | SkipJsonSchema[None] = Field(default=None, description="Absent until the batch completes")


class BatchAccepted(WireModel):
    """A fan-out batch as accepted: its id and its children's ids, in the order of the request."""

    id: str
    status: Literal["running", "completed", "completed_with_failures"] = Field(
        description="running until every child is final"
    )
    total: int = Field(ge=1, le=MAX_BATCH_JOBS)
    jobIds: list[str] = Field(description="The children, in the order of `jobs`; each is a job (GET /jobs/{id})")
    createdAt: str
    onComplete: BatchOnComplete | SkipJsonSchema[None] = Field(default=None, description="If one was given")


class BatchCounts(StatusCounts):
    """The children by their current status (read from the children themselves)."""


class Batch(BatchAccepted):
    """A fan-out batch: completed (or completed_with_failures) once every child is final; it is not reopened by a
    later retry of a child."""

    counts: BatchCounts
    completedAt: str | None = Field(description="When its last child became final")


class CallerKey(WireModel):
    """The caller's API key (``GET /me``): whose it is, what it may do, how fast. Never its value."""

    tenant: str
    keyId: str
    scope: Literal["full", "read"] = Field(description="`read`: GET only; any other method is 403 FORBIDDEN")
    rateLimit: float = Field(description="Requests per second, on average")
    burstLimit: int = Field(description="Requests at once: a window of burstLimit/rateLimit seconds admits this many")
