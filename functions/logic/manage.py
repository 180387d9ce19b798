"""Reading and steering jobs on behalf of a tenant: get, list, cancel (one or all matching), retry, stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from functions.dal.jobs_repository import STATUS_COUNTERS, InvalidCursor, JobPage, JobsRepository, minute_key
from functions.logic.clock import Clock, iso
from functions.logic.enqueue import send_or_leave_to_sweeper
from functions.logic.lanes import JobQueue
from functions.logic.queries import int_query
from functions.logic.transitions import read_decide_write
from functions.models.errors import (
    ConcurrentUpdate,
    InvalidBody,
    InvalidOption,
    InvalidQuery,
    InvalidState,
    InvalidType,
    NotFound,
)
from functions.models.job import CANCELLABLE_STATUSES, Job, JobStatus
from functions.models.requests import CancelMatchingRequest

_MAX_RACE_RETRIES = 5
logger = Logger(child=True)


def get_job(repo: JobsRepository, tenant: str, job_id: str) -> Job:
    job = repo.get(tenant, job_id)
    if job is None:
        raise NotFound(f"job '{job_id}' not found")
    return job


def list_jobs(repo: JobsRepository, tenant: str, query: dict[str, str]) -> JobPage:
    unknown = sorted(set(query) - {"status", "type", "limit", "cursor"})
    if unknown:
        raise InvalidQuery(f"unknown query parameter(s): {', '.join(unknown)}")
    status: JobStatus | None = None
    if query.get("status"):
        try:
            status = JobStatus(query["status"])
        except ValueError as exc:
            valid = ", ".join(s.value for s in JobStatus)
            raise InvalidQuery(f"'status' must be one of: {valid}") from exc
    limit = int_query(query, "limit", 50, 1, 100)
    job_type = query.get("type") or None
    try:
        return repo.list_page(tenant, status, job_type, limit, query.get("cursor") or None)
    except InvalidCursor as exc:
        raise InvalidQuery(str(exc)) from exc


def job_stats(repo: JobsRepository, tenant: str) -> dict[str, Any]:
    counters = repo.counters(tenant)
    by_status = {name: max(0, counters.get(name, 0)) for name in STATUS_COUNTERS}
    total = sum(by_status.values())
    completed, failed = by_status["completed"], by_status["failed"]
    return {
        "enqueued": counters.get("enqueued", 0),
        "processed": completed + failed,
        "total": total,
        **by_status,
        "completionRate": completed / total if total else 0.0,
        "failureRate": failed / total if total else 0.0,
    }


def throughput(repo: JobsRepository, tenant: str, query: dict[str, str], now_ms: int) -> dict[str, Any]:
    """Completions and failures per minute over the last ``minutes`` (1-1440, default 60), oldest first."""
    minutes = int_query(query, "minutes", 60, 1, 1440)
    current = now_ms - now_ms % 60_000
    keys = [minute_key(iso(current - 60_000 * back)) for back in range(minutes - 1, -1, -1)]
    # A minute that ended over a minute ago takes no more completions (they are stamped when they happen).
    counts = repo.throughput(tenant, keys, settled_before=minute_key(iso(current - 60_000)))
    return {"minutes": minutes, "buckets": [{"minute": key, **counts[key]} for key in keys]}


def cancel_job(
    repo: JobsRepository,
    tenant: str,
    job_id: str,
    clock: Clock,
    *,
    queue: JobQueue | None = None,
    pending_grace_seconds: int = 120,
    after_final: Callable[[Job], None] | None = None,
) -> Job:
    """Cancel a waiting job. Cancelled is final: its completion callback goes out (through ``queue``; without one,
    the sweeper sends it after ``pending_grace_seconds``) and ``after_final`` is told (its batch may be complete)."""
    # Imported here: reading and listing jobs (the API's GET /jobs/{id} goes through this module) never need it.
    from functions.logic import callbacks

    def cancel(job: Job, now: int) -> Job:
        return callbacks.arm(job.cancel(iso(now)), now, pending_grace_seconds)

    job = read_decide_write(repo, tenant, job_id, clock, cancel, attempts=_MAX_RACE_RETRIES)
    callbacks.announce_final(queue, job, after_final, event="a cancel")
    return job


def retry_job(
    repo: JobsRepository, queue: JobQueue, tenant: str, job_id: str, clock: Clock, pending_grace_seconds: int
) -> Job:
    def retry(job: Job, now: int) -> Job:
        # Its callback waits for the next final state (a message still queued for the last one is then dropped).
        return job.reset(iso(now), sweep_at=iso(now + pending_grace_seconds * 1000))

    job = read_decide_write(repo, tenant, job_id, clock, retry, attempts=_MAX_RACE_RETRIES)
    send_or_leave_to_sweeper(queue, job)
    return job


# Jobs looked at per POST /jobs/cancel: pages of the listing (each a read) and a conditional write per job, well
# inside the API's 29 s. A larger backlog answers ``more: true``; calling again cancels the next ones.
CANCEL_PAGE_SIZE = 100
CANCEL_MAX_PAGES = 5


def parse_cancel_matching(body: Any, known_types: list[str]) -> tuple[JobStatus | None, str | None]:
    """``POST /jobs/cancel``'s body (``{status?, type?}``): INVALID_BODY, INVALID_OPTION or INVALID_TYPE."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    try:
        request = CancelMatchingRequest.model_validate(body)
    except ValidationError as exc:
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        raise InvalidOption(f"invalid field(s): {', '.join(fields)} ('status' and 'type' are strings)") from exc
    cancellable = sorted(s.value for s in CANCELLABLE_STATUSES)
    if request.status is not None and request.status not in cancellable:
        raise InvalidOption(f"'status' must be one of: {', '.join(cancellable)}")
    if request.type is not None and request.type not in known_types:
        raise InvalidType(f"'type' must be one of: {', '.join(known_types)}")
    return (JobStatus(request.status) if request.status else None), request.type


def cancel_matching(
    repo: JobsRepository,
    tenant: str,
    status: JobStatus | None,
    job_type: str | None,
    clock: Clock,
    *,
    queue: JobQueue | None = None,
    pending_grace_seconds: int = 120,
    after_final: Callable[[Job], None] | None = None,
    max_pages: int = CANCEL_MAX_PAGES,
) -> dict[str, Any]:
    """Cancel the tenant's cancellable jobs of ``status`` (all cancellable statuses when None) and ``job_type``, one
    conditional transition each, as ``DELETE /jobs/{id}`` does. ``{"cancelled": N}``, plus ``"more": true`` when
    the page budget ran out before the listing did. A job that moved on meanwhile (it started, or ended) is left."""
    statuses = [status] if status is not None else sorted(CANCELLABLE_STATUSES, key=lambda s: s.value)
    cancelled = 0
    pages = 0
    for wanted in statuses:
        cursor: str | None = None
        while True:
            if pages == max_pages:
                return {"cancelled": cancelled, "more": True}
            page = repo.list_page(tenant, wanted, job_type, CANCEL_PAGE_SIZE, cursor)
            pages += 1
            for job in page.jobs:
                if job.status not in CANCELLABLE_STATUSES:
                    continue  # the listing lags the record a little; the record decides below anyway
                try:
                    cancel_job(
                        repo,
                        tenant,
                        job.id,
                        clock,
                        queue=queue,
                        pending_grace_seconds=pending_grace_seconds,
                        after_final=after_final,
                    )
                except (InvalidState, NotFound, ConcurrentUpdate):
                    continue
                cancelled += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    return {"cancelled": cancelled}
