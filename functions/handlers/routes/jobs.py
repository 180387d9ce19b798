"""Jobs: enqueue (``POST /jobs``, ``POST /enqueue``), list, get, cancel (one, or all matching) and retry."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from functions.dal import metering
from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_json_body, read_query
from functions.handlers.runtime import dependency_store, files, runtime, settle_batch
from functions.logic import manage, waiting
from functions.logic.clock import system_clock
from functions.logic.enqueue import Accepted, JobSpec, enqueue_settings, parse_job_spec, parse_message_request, submit
from functions.logic.job_types import registered_types
from functions.logic.payloads import with_full_payload
from functions.models.bounds import JOB_ID_MAX_LENGTH
from functions.models.errors import InvalidQuery, NotFound, shown
from functions.models.job import Job

router = Router()

JobId = Annotated[str, PathParam(description=doc.JOB_ID)]
LOCATION = {"Location": "The job's URL: /jobs/{id}"}
LONG_POLL_HEADER = "X-Long-Poll"


@router.post(
    "/jobs",
    summary="Enqueue a job",
    description="Validates the payload against the type's model, stores the job and queues it (now, after "
    "`delaySeconds`, or at `runAt`). A 202 means the job will reach a final state.",
    operation_id=doc.request_body("createJob", doc.create_job_body),
    tags=["jobs"],
    responses={
        200: doc.replayed("Job", "job", LOCATION),
        202: doc.ok("Job", "Accepted: the job record (pending, or scheduled)", LOCATION),
        **doc.keyed_errors(
            *doc.ENQUEUE_ERRORS,
        ),
    },
    openapi_extensions=doc.idempotency_key_header("job"),
)
def create_job() -> Response[str]:
    tenant = caller_tenant(router)
    key = router.current_event.headers.get("idempotency-key")  # case-insensitive in Powertools 3
    spec = parse_job_spec(read_json_body(router), system_clock(), key, runtime().settings, tenant=tenant)
    job, replayed = _submit(spec, tenant)
    if replayed:
        return json_response(200, record(job), headers={"Location": f"/jobs/{job.id}", doc.REPLAYED_HEADER: "true"})
    return json_response(202, job.to_api(), headers={"Location": f"/jobs/{job.id}"})


@router.post(
    "/enqueue",
    summary="Enqueue a message job",
    description="`{message}` becomes a `message` job, which completes with the message when consumed: the shortest "
    "way to queue work (`POST /jobs` with type `message` is the same job).",
    operation_id=doc.request_body("enqueueMessage", doc.message_body),
    tags=["jobs"],
    responses={
        202: doc.ok("Enqueued", "Accepted: the queued message job", LOCATION),
        **doc.keyed_errors("INVALID_BODY", "INVALID_MESSAGE", "PAYLOAD_TOO_LARGE"),
    },
)
def enqueue_message() -> Response[str]:
    tenant = caller_tenant(router)
    job = _submit(parse_message_request(read_json_body(router)), tenant).job
    body = {"queued": True, "id": job.id, "message": job.payload["message"], "enqueuedAt": job.created_at}
    return json_response(202, body, headers={"Location": f"/jobs/{job.id}"})


@router.get(
    "/jobs",
    summary="List jobs",
    description="The tenant's jobs, newest first, optionally of one status and/or type, a page at a time.",
    operation_id="listJobs",
    tags=["jobs"],
    responses={200: doc.ok("JobPage", "A page of jobs"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        doc.query_param("status", "Only jobs in this status", {"type": "string", "enum": doc.STATUS_VALUES}),
        doc.query_param("type", "Only jobs of this type", {"type": "string", "enum": registered_types()}),
        *doc.page_params(),
    ),
)
def list_jobs() -> Response[str]:
    tenant = caller_tenant(router)
    query = read_query(router, {"status", "type", "limit", "cursor"})
    if "status" in query and query["status"] not in doc.STATUS_VALUES:
        raise InvalidQuery(f"'status' must be one of: {', '.join(doc.STATUS_VALUES)}")
    if "type" in query and query["type"] not in registered_types():
        raise InvalidQuery(f"'type' must be one of: {', '.join(registered_types())}")
    page = manage.list_jobs(runtime().repo, tenant, query)
    body = {"jobs": [job.to_api() for job in page.jobs], "count": len(page.jobs), "nextCursor": page.next_cursor}
    return json_response(200, body)


@router.post(
    "/jobs/cancel",
    summary="Cancel every matching job",
    description="Cancels the tenant's scheduled, pending, retrying and waiting jobs, of one `status` and/or `type` "
    "when given, each as `DELETE /jobs/{id}` would; jobs in other statuses are left alone. One call looks at up to "
    f"{manage.CANCEL_MAX_PAGES * manage.CANCEL_PAGE_SIZE} jobs: `more: true` says some were left (call again).",
    operation_id=doc.request_body("cancelJobs", doc.cancel_matching_body),
    tags=["jobs"],
    responses={
        200: doc.ok("CancelledJobs", "How many jobs were cancelled"),
        **doc.errors(
            "INVALID_BODY",
            "INVALID_OPTION",
            "INVALID_TYPE",
            *doc.KEYED_ERRORS,
            notes={
                "INVALID_BODY": "the body is not a JSON object (an empty body means every cancellable job)",
                "INVALID_OPTION": "an unknown field, a field that is not a string, or a `status` that cannot be "
                "cancelled (only scheduled, pending, retrying, waiting)",
                "INVALID_TYPE": "`type` is not a registered job type; the message lists the types",
            },
        ),
    },
)
def cancel_jobs() -> Response[str]:
    rt = runtime()
    tenant = caller_tenant(router)
    body = read_json_body(router) if (router.current_event.body or "").strip() else {}
    status, job_type = manage.parse_cancel_matching(body, registered_types())
    answer = manage.cancel_matching(
        rt.repo,
        tenant,
        status,
        job_type,
        system_clock,
        queue=rt.queue,
        pending_grace_seconds=rt.settings.pending_grace_seconds,
        after_final=settle_batch,
    )
    return json_response(200, answer)


@router.get(
    "/jobs/<job_id>",
    summary="Get a job",
    description="The whole record: status, attempts, result, last error and every transition in `history`. "
    "With `wait=N` (up to 20 s) the answer comes as soon as the job is final, or after N seconds as it is then.",
    operation_id="getJob",
    tags=["jobs"],
    responses={
        200: doc.ok("Job", "The job", {LONG_POLL_HEADER: "`1`: this server supports `wait`"}),
        **doc.keyed_errors("NOT_FOUND", "INVALID_QUERY"),
    },
    openapi_extensions=doc.parameters(
        doc.path_param("job_id", doc.JOB_ID),
        doc.query_param(
            "wait",
            "Long-poll: seconds to wait for a final status",
            doc.integer_schema(0, waiting.MAX_WAIT_SECONDS, 0),
        ),
    ),
)
def get_job(job_id: Annotated[str, PathParam(include_in_schema=False)]) -> Response[str]:
    tenant = caller_tenant(router)
    wait = waiting.parse_wait(read_query(router, {"wait"}))
    known_id(job_id)
    # Leave the function time to answer: its timeout bounds the wait, whatever was asked.
    context = router.lambda_context
    remaining = context.get_remaining_time_in_millis() / 1000 - 2 if context else wait
    job, _ = waiting.wait_for_final(runtime().repo, tenant, job_id, max(0.0, min(wait, remaining)))
    return json_response(200, record(job), headers={LONG_POLL_HEADER: "1"})


@router.delete(
    "/jobs/<job_id>",
    summary="Cancel a job",
    description="Scheduled, pending, retrying and waiting jobs only; it never runs, even if its message is already "
    "queued (a waiting job's dependents are then cancelled too).",
    operation_id="cancelJob",
    tags=["jobs"],
    responses={
        200: doc.ok("Job", "The cancelled job"),
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE", "CONFLICT"),
    },
)
def cancel_job(job_id: JobId) -> Response[str]:
    rt = runtime()
    tenant = caller_tenant(router)
    job = manage.cancel_job(
        rt.repo,
        tenant,
        known_id(job_id),
        system_clock,
        queue=rt.queue,
        pending_grace_seconds=rt.settings.pending_grace_seconds,
        after_final=settle_batch,
    )
    return json_response(200, record(job))


@router.post(
    "/jobs/<job_id>/retry",
    summary="Run a failed or cancelled job again",
    description="Back to pending with attempts reset; the history is kept.",
    operation_id="retryJob",
    tags=["jobs"],
    responses={
        202: doc.ok("Job", "Accepted: the job, pending again", LOCATION),
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE", "CONFLICT"),
    },
)
def retry_job(job_id: JobId) -> Response[str]:
    rt = runtime()
    tenant = caller_tenant(router)
    job = manage.retry_job(rt.repo, rt.queue, tenant, known_id(job_id), system_clock, rt.settings.pending_grace_seconds)
    return json_response(202, record(job), headers={"Location": f"/jobs/{job.id}"})


def known_id(job_id: str) -> str:
    """``job_id``, or NOT_FOUND quoting it cut short when it is too long to be any job's id."""
    if len(job_id) > JOB_ID_MAX_LENGTH:
        raise NotFound(f"job '{shown(job_id)}' not found")
    return job_id


def _submit(spec: JobSpec, tenant: str) -> Accepted:
    rt = runtime()
    prepare = None
    if spec.depends_on:
        # Imported for the jobs that wait for others only: a plain POST /jobs never needs it.
        from functions.logic import dependencies

        prepare = dependencies.gate(dependency_store(), spec.depends_on)
    settings = enqueue_settings(rt.settings)
    # The create request's own calls and time: the job's cost (logic/cost.py). An HTTP API's events name their
    # payload format version (1.0 here); a REST API's carry none.
    gateway = "http" if "version" in router.current_event.raw_event else "rest"
    with metering.metered(gateway):
        accepted = submit(spec, tenant, rt.repo, rt.queue, system_clock, settings, files=files, prepare=prepare)
    return accepted


# POST /schedules/{id}/run enqueues as POST /jobs does.
submit_for = _submit


def record(job: Job) -> dict[str, Any]:
    """One job as the API shows it: with its whole payload, even when that is kept in S3 (listings show a stub)."""
    return with_full_payload(job, files() if job.payload_ref else None).to_api()
