"""Recurring schedules: create, read, change, delete and run them (the API), and fire the due ones (the sweeper).

Firing rides on the sweeper, which already runs every minute on AWS (every 2 s under ``make run``): it reads the
enabled schedules whose ``nextRunAt`` has passed from a sparse due-time index (dal/schedules.py) and, for each:

1. takes the latest run time at or before now: time missed while nothing ran fires once, never a burst;
2. enqueues the schedule's job through ``submit`` (the one enqueue use case) with an idempotency key made of the
   schedule's id and that run time, so two sweeps racing, or a sweep retried after a crash, make one job;
3. moves ``nextRunAt`` to the first run after now, conditional on the version it read, with ``lastRunAt``,
   ``lastJobId`` and ``lastError`` (set when the job could not be enqueued: the cadence goes on regardless).

A storage error leaves the schedule as it was: the next sweep tries the same run again, under the same key.
docs/schedules.md says why this mechanism rather than EventBridge Scheduler.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools import Logger

from functions.dal.schedules import InvalidScheduleCursor, ScheduleStore
from functions.logic import schedules_cron as cron
from functions.logic.clock import Clock, iso, parse_iso_ms
from functions.logic.enqueue import Accepted, JobSpec, parse_job_spec
from functions.logic.queries import int_query
from functions.models.bounds import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, LIST_LIMIT_MIN
from functions.models.errors import (
    ApiError,
    ConcurrentUpdate,
    IdempotencyConflict,
    InvalidBody,
    InvalidOption,
    InvalidPayload,
    InvalidQuery,
    InvalidSchedule,
    NotFound,
    StorageError,
    shown,
)
from functions.models.schedules import (
    CREATE_FIELDS,
    JOB_MAX_BYTES,
    NAME_MESSAGE,
    NAME_PATTERN,
    REFUSED_JOB_FIELDS,
    UPDATE_FIELDS,
    Schedule,
)
from functions.settings import Settings

logger = Logger(child=True)

PREVIEW_COUNT_MIN = 1
PREVIEW_COUNT_MAX = 20
PREVIEW_COUNT_DEFAULT = 5
DUE_PAGE_SIZE = 100
MAX_DUE_PAGES_PER_SHARD = 10  # bounds one sweep; what is left is the next sweep's
SCHEDULE_ID_LENGTH = 36
# A PATCH or DELETE that loses a race with a sweep (a run moving the schedule on) reads it again, this many times.
WRITE_ATTEMPTS = 3

# Enqueues a spec for a tenant (``submit`` with the caller's repository, queue, clock and settings bound).
Submit = Callable[[JobSpec, str], Accepted]


def new_schedule_id(now_ms: int) -> str:
    """A UUID (version 7 layout): its first 48 bits are the creation time, so ids sort in creation order."""
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (now_ms & 0xFFFF_FFFF_FFFF) << 80 | random_bits
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


# --- validating a request ---


def _field_error(field: str, message: str) -> InvalidSchedule:
    return InvalidSchedule(message, details={"field": field})


def _check_fields(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        names = ", ".join(shown(str(name)) for name in unknown)
        raise InvalidSchedule(
            f"unknown field(s): {names}; accepted: {', '.join(allowed)}",
            details={"field": shown(str(unknown[0])), "allowed": list(allowed)},
        )
    return body


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(NAME_PATTERN, value):
        raise _field_error("name", NAME_MESSAGE)
    return value


def _check_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _field_error("enabled", "'enabled' must be true or false")
    return value


def check_job(job: Any, now_ms: int, settings: Settings, tenant: str) -> dict[str, Any]:
    """A schedule's job spec, validated as ``POST /jobs`` validates a body (its codes), without the options that
    say when it runs (the schedule does) or key it (each run has its own key)."""
    if not isinstance(job, dict):
        raise _field_error("job", "'job' must be a JSON object: a job spec as POST /jobs takes it")
    refused = [name for name in REFUSED_JOB_FIELDS if name in job]
    if refused:
        raise InvalidOption(
            f"'{refused[0]}' is not allowed in a schedule's job: the schedule says when its jobs run",
            details={"refused": list(REFUSED_JOB_FIELDS)},
        )
    try:
        parse_job_spec(job, now_ms, None, settings, tenant=tenant)
    except ApiError as exc:
        raise type(exc)(f"job: {exc.message}", details=exc.details) from exc
    if len(json.dumps(job, separators=(",", ":")).encode()) > JOB_MAX_BYTES:
        raise InvalidPayload(f"job: a schedule's job is at most {JOB_MAX_BYTES} bytes of JSON")
    return job


def _next_run(expression: str, timezone: str, now_ms: int) -> str:
    return iso(cron.next_run_after(expression, timezone, now_ms))


# --- the API's use cases ---


def create_schedule(store: ScheduleStore, tenant: str, body: Any, now_ms: int, settings: Settings) -> Schedule:
    body = _check_fields(body, CREATE_FIELDS)
    for required in ("name", "cron", "job"):
        if required not in body:
            raise _field_error(required, f"'{required}' is required")
    name = _check_name(body["name"])
    expression = cron.check_cron(body["cron"])
    timezone = cron.check_timezone(body.get("timezone", cron.DEFAULT_TIMEZONE))
    enabled = _check_enabled(body.get("enabled", True))
    job = check_job(body["job"], now_ms, settings, tenant)
    schedule = Schedule(
        id=new_schedule_id(now_ms),
        tenant=tenant,
        name=name,
        cron=expression,
        timezone=timezone,
        job=job,
        enabled=enabled,
        next_run_at=_next_run(expression, timezone, now_ms) if enabled else None,
        created_at=iso(now_ms),
        updated_at=iso(now_ms),
    )
    store.create(schedule)
    return schedule


def get_schedule(store: ScheduleStore, tenant: str, schedule_id: str) -> Schedule:
    if len(schedule_id) == SCHEDULE_ID_LENGTH:
        found = store.get(tenant, schedule_id)
        if found is not None:
            return found
    raise NotFound(f"schedule '{shown(schedule_id)}' not found")


def list_schedules(store: ScheduleStore, tenant: str, query: dict[str, str]) -> dict[str, Any]:
    limit = int_query(query, "limit", LIST_LIMIT_DEFAULT, LIST_LIMIT_MIN, LIST_LIMIT_MAX)
    try:
        schedules, next_cursor = store.list_page(tenant, limit, query.get("cursor"))
    except InvalidScheduleCursor as exc:
        raise InvalidQuery(str(exc)) from exc
    return {
        "schedules": [schedule.to_api() for schedule in schedules],
        "count": len(schedules),
        "nextCursor": next_cursor,
    }


def update_schedule(
    store: ScheduleStore, tenant: str, schedule_id: str, body: Any, now_ms: int, settings: Settings
) -> Schedule:
    """PATCH: any of cron, timezone, job, enabled; ``nextRunAt`` is computed again from now (none while disabled)."""
    body = _check_fields(body, UPDATE_FIELDS)
    current = get_schedule(store, tenant, schedule_id)
    expression = cron.check_cron(body["cron"]) if "cron" in body else None
    timezone = cron.check_timezone(body["timezone"]) if "timezone" in body else None
    enabled = _check_enabled(body["enabled"]) if "enabled" in body else None
    job = check_job(body["job"], now_ms, settings, tenant) if "job" in body else None
    for attempt in range(WRITE_ATTEMPTS):
        if attempt:  # a sweep moved it on meanwhile (a run): apply the change to what it is now
            current = get_schedule(store, tenant, schedule_id)
        new_cron, new_zone = expression or current.cron, timezone or current.timezone
        new_enabled = current.enabled if enabled is None else enabled
        updated = current.model_copy(
            update={
                "cron": new_cron,
                "timezone": new_zone,
                "enabled": new_enabled,
                "job": current.job if job is None else job,
                "next_run_at": _next_run(new_cron, new_zone, now_ms) if new_enabled else None,
                "updated_at": iso(now_ms),
            }
        )
        try:
            store.replace(current, updated)
        except ConcurrentUpdate:
            continue
        return updated.model_copy(update={"version": current.version + 1})
    raise ConcurrentUpdate("the schedule kept changing while it was being updated")


def delete_schedule(store: ScheduleStore, tenant: str, schedule_id: str) -> Schedule:
    for _ in range(WRITE_ATTEMPTS):
        schedule = get_schedule(store, tenant, schedule_id)
        try:
            store.delete(schedule)
        except ConcurrentUpdate:
            continue  # a sweep ran it meanwhile
        return schedule
    raise ConcurrentUpdate("the schedule kept changing while it was being deleted")


def run_now(
    store: ScheduleStore, tenant: str, schedule_id: str, now_ms: int, settings: Settings, submit: Submit
) -> Accepted:
    """``POST /schedules/{id}/run``: the schedule's job, enqueued now, outside its cadence (which is unchanged)."""
    schedule = get_schedule(store, tenant, schedule_id)
    spec = parse_job_spec(schedule.job, now_ms, None, settings, tenant=tenant)
    return submit(_for_schedule(spec, schedule.id), tenant)


def preview(query: dict[str, str], now_ms: int) -> dict[str, list[str]]:
    """``GET /schedules/preview``: the next ``count`` run times of ``cron`` in ``timezone``."""
    if "cron" not in query:
        raise _field_error("cron", "'cron' is required")
    expression = cron.check_cron(query["cron"])
    timezone = cron.check_timezone(query.get("timezone", cron.DEFAULT_TIMEZONE))
    count = int_query(query, "count", PREVIEW_COUNT_DEFAULT, PREVIEW_COUNT_MIN, PREVIEW_COUNT_MAX)
    return {"runs": [iso(at) for at in cron.upcoming(expression, timezone, now_ms, count)]}


def _for_schedule(spec: JobSpec, schedule_id: str, idempotency_key: str | None = None) -> JobSpec:
    return replace(spec, schedule_id=schedule_id, idempotency_key=idempotency_key)


# --- firing (the sweeper) ---


@dataclass(frozen=True)
class FireReport:
    fired: int = 0
    failed: int = 0
    skipped: int = 0


def run_key(schedule_id: str, due_ms: int) -> str:
    """The idempotency key of one run: the same for every sweep that fires it."""
    return f"schedule:{schedule_id}:{iso(due_ms)}"


def fire_due(store: ScheduleStore, shards: int, clock: Clock, settings: Settings, submit: Submit) -> FireReport:
    """One pass over the due schedules of every shard of the due-time index."""
    fired = failed = skipped = 0
    for shard in range(shards):
        for _ in range(MAX_DUE_PAGES_PER_SHARD):
            now = clock()
            due = store.due(shard, iso(now), DUE_PAGE_SIZE)
            for schedule in due:
                try:
                    outcome = fire(store, schedule, now, settings, submit)
                except (ApiError, ValueError, LookupError):
                    # Its cron or zone no longer reads (a library or tzdata change): the others still fire.
                    logger.exception("schedule could not be fired", extra={"schedule_id": schedule.id})
                    outcome = "skipped"
                fired += outcome == "fired"
                failed += outcome == "failed"
                skipped += outcome == "skipped"
            if len(due) < DUE_PAGE_SIZE:
                break
    report = FireReport(fired=fired, failed=failed, skipped=skipped)
    if fired or failed:
        logger.info("schedules fired", extra=vars(report))
    return report


def fire(store: ScheduleStore, schedule: Schedule, now: int, settings: Settings, submit: Submit) -> str:
    """Run ``schedule`` once for its latest due time and move it on: "fired", "failed" (recorded in lastError) or
    "skipped" (not due, or another sweep or a PATCH moved it first)."""
    if not schedule.enabled or schedule.next_run_at is None:
        return "skipped"
    seen = parse_iso_ms(schedule.next_run_at)
    if seen > now:
        return "skipped"
    latest = cron.latest_run_at_or_before(schedule.cron, schedule.timezone, now)
    due = max(seen, latest) if latest is not None else seen
    job_id: str | None = None
    error: str | None = None
    try:
        spec = parse_job_spec(schedule.job, now, None, settings, tenant=schedule.tenant)
        job_id = submit(_for_schedule(spec, schedule.id, run_key(schedule.id, due)), schedule.tenant).job.id
    except IdempotencyConflict:
        # This run's key holds a job made from the schedule's job as it was before a PATCH: that run is done.
        job_id = schedule.last_job_id
    except ApiError as exc:
        error = f"{exc.code}: {exc.message}"
    except StorageError:
        logger.warning("schedule not fired; the next sweep tries again", extra={"schedule_id": schedule.id})
        return "skipped"
    moved = schedule.model_copy(
        update={
            "next_run_at": iso(cron.next_run_after(schedule.cron, schedule.timezone, max(now, due))),
            "last_run_at": iso(due),
            "last_job_id": job_id if error is None else schedule.last_job_id,
            "last_error": error,
        }
    )
    try:
        store.replace(schedule, moved)
    except ConcurrentUpdate:
        return "skipped"  # another sweep fired this run (the same job, by its key) or a PATCH moved it
    if error is not None:
        logger.warning("schedule run could not enqueue its job", extra={"schedule_id": schedule.id, "error": error})
        return "failed"
    return "fired"
