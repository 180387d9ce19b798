"""Recurring schedules: ``/schedules`` (create, list), ``/schedules/{id}`` (get, change, delete), ``POST
/schedules/{id}/run`` (run now) and ``GET /schedules/preview`` (the next run times of a cron expression)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_json_body, read_query
from functions.handlers.routes.jobs import LOCATION, submit_for
from functions.handlers.runtime import runtime, schedule_store
from functions.logic.clock import system_clock

# Each route imports the schedules' logic (its models, cron parser and time-zone list) when first called, and the
# preview's parameters are built with the document: POST /jobs and GET /jobs/{id} need none of it at a cold start.
router = Router()

ScheduleId = Annotated[str, PathParam(description=doc.SCHEDULE_ID)]
SCHEDULE_LOCATION = {"Location": "The schedule's URL: /schedules/{id}"}
_JOB_CODES = ("INVALID_BODY", "INVALID_TYPE", "INVALID_PAYLOAD", "INVALID_OPTION", "PAYLOAD_TOO_LARGE")
_NOTES = {
    "INVALID_BODY": "the body is not a JSON object",
    "INVALID_TYPE": "the job's `type` is not a registered job type; the message lists the types",
    "INVALID_PAYLOAD": "the job's payload does not fit its type's model (`details`), or the job is over 256 KiB of "
    "JSON",
    "INVALID_OPTION": "a job option is out of range or unknown, or the job has `delaySeconds`, `runAt` or "
    "`idempotencyKey` (the schedule says when its jobs run)",
    "INVALID_SCHEDULE": "`name`, `cron`, `timezone`, `enabled` or `job` is missing or not valid (`job`: not a JSON "
    "object), or a field is unknown; `details.field` names it",
}
_NOT_FOUND = {"NOT_FOUND": "no such schedule for this tenant"}


@router.post(
    "/schedules",
    summary="Create a recurring schedule",
    description="Enqueues `job` at each time `cron` names, in `timezone` (exactly one job per run time, whose record "
    "carries `scheduleId`). Runs are to the minute; time missed while the service was down runs once.",
    operation_id=doc.request_body("createSchedule", doc.create_schedule_body),
    tags=["schedules"],
    responses={
        201: doc.ok("Schedule", "The schedule", SCHEDULE_LOCATION),
        **doc.errors(*_JOB_CODES, "INVALID_SCHEDULE", "SCHEDULE_EXISTS", *doc.KEYED_ERRORS, notes=_NOTES),
    },
)
def create_schedule() -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    body = read_json_body(router)
    schedule = schedules.create_schedule(schedule_store(), tenant, body, system_clock(), runtime().settings)
    return json_response(201, schedule.to_api(), headers={"Location": f"/schedules/{schedule.id}"})


@router.get(
    "/schedules",
    summary="List schedules",
    description="The tenant's schedules, oldest first, a page at a time.",
    operation_id="listSchedules",
    tags=["schedules"],
    responses={200: doc.ok("SchedulePage", "A page of schedules"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        *doc.page_params(),
    ),
)
def list_schedules() -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    query = read_query(router, {"limit", "cursor"})
    return json_response(200, schedules.list_schedules(schedule_store(), tenant, query))


def _preview_parameters() -> dict[str, Any]:
    """GET /schedules/preview's query parameters, built with the document."""
    from functions.logic import schedules, schedules_cron

    return doc.parameters(
        {
            **doc.query_param(
                "cron", "The cron expression", {"type": "string", "pattern": schedules_cron.CRON_PATTERN}
            ),
            "required": True,
        },
        doc.query_param(
            "timezone", "An IANA time zone", {"type": "string", "enum": list(schedules_cron.timezone_names())}
        ),
        doc.query_param(
            "count",
            "How many run times",
            doc.integer_schema(
                schedules.PREVIEW_COUNT_MIN, schedules.PREVIEW_COUNT_MAX, schedules.PREVIEW_COUNT_DEFAULT
            ),
        ),
    )


# Declared before /schedules/<schedule_id>, which would otherwise take "preview" for an id.
@router.get(
    "/schedules/preview",
    summary="The next run times of a cron expression",
    description="What a schedule with this `cron` and `timezone` would run at next (ISO times, UTC), computed as the "
    "sweeper computes them: the dashboard shows them as you type.",
    operation_id=doc.parameters_built_with_document("previewSchedule", _preview_parameters),
    tags=["schedules"],
    responses={
        200: doc.ok("RunTimes", "The next run times"),
        **doc.errors(
            "INVALID_SCHEDULE",
            "INVALID_QUERY",
            *doc.KEYED_ERRORS,
            notes={
                "INVALID_SCHEDULE": "`cron` is missing or not valid, or `timezone` is not valid; `details.field` "
                "names it",
                "INVALID_QUERY": "`count` is out of range, or a parameter is unknown, repeated or empty",
            },
        ),
    },
)
def preview_schedule() -> Response[str]:
    from functions.logic import schedules

    caller_tenant(router)
    query = read_query(router, {"cron", "timezone", "count"})
    return json_response(200, schedules.preview(query, system_clock()))


@router.get(
    "/schedules/<schedule_id>",
    summary="Get a schedule",
    description="The schedule, with its next run and what its last run enqueued (or why it could not).",
    operation_id="getSchedule",
    tags=["schedules"],
    responses={200: doc.ok("Schedule", "The schedule"), **doc.errors("NOT_FOUND", *doc.KEYED_ERRORS, notes=_NOT_FOUND)},
)
def get_schedule(schedule_id: ScheduleId) -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    return json_response(200, schedules.get_schedule(schedule_store(), tenant, schedule_id).to_api())


@router.patch(
    "/schedules/<schedule_id>",
    summary="Change a schedule",
    description="Any of `cron`, `timezone`, `job`, `enabled`; `nextRunAt` is computed again from now (none while "
    "disabled). The name is kept.",
    operation_id=doc.request_body("updateSchedule", doc.update_schedule_body),
    tags=["schedules"],
    responses={
        200: doc.ok("Schedule", "The schedule, changed"),
        **doc.errors(
            *_JOB_CODES, "INVALID_SCHEDULE", "NOT_FOUND", "CONFLICT", *doc.KEYED_ERRORS, notes={**_NOTES, **_NOT_FOUND}
        ),
    },
)
def update_schedule(schedule_id: ScheduleId) -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    body = read_json_body(router)
    schedule = schedules.update_schedule(
        schedule_store(), tenant, schedule_id, body, system_clock(), runtime().settings
    )
    return json_response(200, schedule.to_api())


@router.delete(
    "/schedules/<schedule_id>",
    summary="Delete a schedule",
    description="It never runs again; the jobs it enqueued are left as they are.",
    operation_id="deleteSchedule",
    tags=["schedules"],
    responses={
        200: doc.ok("Schedule", "The deleted schedule"),
        **doc.errors("NOT_FOUND", "CONFLICT", *doc.KEYED_ERRORS, notes=_NOT_FOUND),
    },
)
def delete_schedule(schedule_id: ScheduleId) -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    return json_response(200, schedules.delete_schedule(schedule_store(), tenant, schedule_id).to_api())


@router.post(
    "/schedules/<schedule_id>/run",
    summary="Run a schedule now",
    description="Enqueues the schedule's job now, outside its cadence (which is unchanged), as POST /jobs would.",
    operation_id="runSchedule",
    tags=["schedules"],
    responses={
        202: doc.ok("Job", "Accepted: the job", LOCATION),
        **doc.errors(
            "INVALID_TYPE",
            "INVALID_PAYLOAD",
            "INVALID_OPTION",
            "NOT_FOUND",
            *doc.KEYED_ERRORS,
            notes={
                **_NOT_FOUND,
                "INVALID_TYPE": "the job's type is no longer one this deployment runs",
                "INVALID_PAYLOAD": "the job's payload no longer fits its type's model",
                "INVALID_OPTION": "a job option is no longer valid",
            },
        ),
    },
)
def run_schedule(schedule_id: ScheduleId) -> Response[str]:
    from functions.logic import schedules

    tenant = caller_tenant(router)
    accepted = schedules.run_now(schedule_store(), tenant, schedule_id, system_clock(), runtime().settings, submit_for)
    return json_response(202, accepted.job.to_api(), headers={"Location": f"/jobs/{accepted.job.id}"})
