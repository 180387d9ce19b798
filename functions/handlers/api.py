"""The producer: every HTTP route of the job API (API Gateway REST, Lambda proxy integration).

Each route declares its OpenAPI description (responses with their models and error codes, request body, query
parameters); ``GET /openapi.json`` and ``GET /swagger`` serve the document Powertools generates from them, and
``openapi.json`` at the repository root is that document, committed (``scripts/export_openapi.py``).

Routes that act for a tenant resolve the caller's tenant first, so an unknown key is 403 before any 400.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers import openapi as doc
from functions.handlers import static
from functions.handlers.http import (
    RequestScopedResolver,
    caller_tenant,
    json_response,
    read_json_body,
    register_error_handlers,
)
from functions.handlers.routes import batches as batch_routes
from functions.handlers.routes import hooks as hook_routes
from functions.handlers.runtime import batch_settler, emit, files, logger, metrics, runtime, traced
from functions.logic import catalogue, manage, results, uploads, waiting
from functions.logic.clock import iso, system_clock
from functions.logic.enqueue import Accepted, EnqueueSettings, JobSpec, parse_job_spec, parse_message_request, submit
from functions.logic.payloads import with_full_payload
from functions.models.errors import NotFound
from functions.models.job import Job
from functions.settings import Settings

app = RequestScopedResolver()
register_error_handlers(app)

JobId = Annotated[str, PathParam(description=doc.JOB_ID)]
LOCATION = {"Location": "The job's URL: /jobs/{id}"}
LONG_POLL_HEADER = "X-Long-Poll"


# --- jobs ---


@app.post(
    "/jobs",
    summary="Enqueue a job",
    description="Validates the payload against the type's model, stores the job and queues it (now, after "
    "`delaySeconds`, or at `runAt`). A 202 means the job will reach a final state.",
    operation_id="createJob",
    tags=["jobs"],
    responses={
        200: doc.replayed(doc.Job, "job", LOCATION),
        202: doc.ok(doc.Job, "Accepted: the job record (pending, or scheduled)", LOCATION),
        **doc.keyed_errors(
            "INVALID_BODY",
            "INVALID_TYPE",
            "INVALID_PAYLOAD",
            "INVALID_OPTION",
            "IDEMPOTENCY_CONFLICT",
            "PAYLOAD_TOO_LARGE",
        ),
    },
    openapi_extensions={
        **doc.json_body(doc.CreateJobRequest, "The job", doc.CREATE_JOB_EXAMPLE),
        **doc.idempotency_key_header("job"),
    },
)
def create_job() -> Response[str]:
    tenant = caller_tenant(app)
    key = app.current_event.headers.get("idempotency-key")  # case-insensitive in Powertools 3
    job, replayed = _submit(parse_job_spec(read_json_body(app), system_clock(), key), tenant)
    if replayed:
        return json_response(200, _record(job), headers={"Location": f"/jobs/{job.id}", doc.REPLAYED_HEADER: "true"})
    return json_response(202, job.to_api(), headers={"Location": f"/jobs/{job.id}"})


@app.post(
    "/enqueue",
    summary="Enqueue a message job (the task-queue seed's route)",
    description="`{message}` becomes a `message` job, which completes with the message when consumed.",
    operation_id="enqueueMessage",
    tags=["jobs"],
    responses={
        202: doc.ok(doc.Enqueued, "Accepted: the queued message job", LOCATION),
        **doc.keyed_errors("INVALID_BODY", "INVALID_MESSAGE", "PAYLOAD_TOO_LARGE"),
    },
    openapi_extensions=doc.json_body(doc.EnqueueMessageRequest, "The message", {"message": "hello"}),
)
def enqueue_message() -> Response[str]:
    tenant = caller_tenant(app)
    job = _accept(parse_message_request(read_json_body(app)), tenant)
    body = {"queued": True, "id": job.id, "message": job.payload["message"], "enqueuedAt": job.created_at}
    return json_response(202, body, headers={"Location": f"/jobs/{job.id}"})


@app.get(
    "/jobs",
    summary="List jobs",
    description="The tenant's jobs, newest first, optionally of one status and/or type, a page at a time.",
    operation_id="listJobs",
    tags=["jobs"],
    responses={200: doc.ok(doc.JobPage, "A page of jobs"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        doc.query_param("status", "Only jobs in this status", {"type": "string", "enum": doc.STATUS_VALUES}),
        doc.query_param("type", "Only jobs of this type", {"type": "string"}),
        doc.query_param("limit", "Page size", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}),
        doc.query_param("cursor", "The previous page's nextCursor", {"type": "string"}),
    ),
)
def list_jobs() -> Response[str]:
    tenant = caller_tenant(app)
    query = app.current_event.query_string_parameters or {}
    page = manage.list_jobs(runtime().repo, tenant, dict(query))
    body = {"jobs": [job.to_api() for job in page.jobs], "count": len(page.jobs), "nextCursor": page.next_cursor}
    return json_response(200, body)


@app.get(
    "/jobs/<job_id>",
    summary="Get a job",
    description="The whole record: status, attempts, result, last error and every transition in `history`. "
    "With `wait=N` (up to 20 s) the answer comes as soon as the job is final, or after N seconds as it is then.",
    operation_id="getJob",
    tags=["jobs"],
    responses={
        200: doc.ok(doc.Job, "The job", {LONG_POLL_HEADER: "`1`: this server supports `wait`"}),
        **doc.keyed_errors("NOT_FOUND", "INVALID_QUERY"),
    },
    openapi_extensions=doc.parameters(
        doc.path_param("job_id", doc.JOB_ID),
        doc.query_param(
            "wait",
            "Long-poll: seconds to wait for a final status",
            {"type": "integer", "minimum": 0, "maximum": waiting.MAX_WAIT_SECONDS, "default": 0},
        ),
    ),
)
def get_job(job_id: Annotated[str, PathParam(include_in_schema=False)]) -> Response[str]:
    tenant = caller_tenant(app)
    wait = waiting.parse_wait(dict(app.current_event.query_string_parameters or {}))
    # Leave the function time to answer: its timeout bounds the wait, whatever was asked.
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - 2 if app.lambda_context else wait
    job, _ = waiting.wait_for_final(runtime().repo, tenant, job_id, max(0.0, min(wait, remaining)))
    return json_response(200, _record(job), headers={LONG_POLL_HEADER: "1"})


@app.get(
    "/jobs/<job_id>/result",
    summary="Get a completed job's result",
    description="When the result names a file (image outputs, fetched pages, crawls, the caller's uploads): a "
    "presigned GET for it, or a 302 to it with `redirect=true`. Otherwise `{result}`.",
    operation_id="getJobResult",
    tags=["jobs"],
    responses={
        200: {
            "description": "A presigned URL for the result's file, or the result itself",
            "content": {doc.JSON: {"model": doc.FileResult | doc.InlineResult}},
        },
        302: {
            "description": "With `redirect=true` and a file result: to the presigned URL",
            "content": {},
            "headers": {"Location": {"description": "The presigned URL", "schema": {"type": "string"}}},
        },
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE"),
    },
    openapi_extensions=doc.parameters(
        doc.path_param("job_id", doc.JOB_ID),
        doc.query_param("redirect", "`1` or `true`: answer 302 to the file", {"type": "string", "enum": ["1", "true"]}),
    ),
)
def get_job_result(job_id: Annotated[str, PathParam(include_in_schema=False)]) -> Response[str]:
    rt = runtime()
    expiry = rt.settings.presign_expiry_seconds
    body = results.job_result(rt.repo, files(), caller_tenant(app), job_id, system_clock, expiry)
    if "url" in body and app.current_event.get_query_string_value("redirect", "") in ("1", "true"):
        return Response(status_code=302, headers={"Location": body["url"]}, body="")
    return json_response(200, body)


@app.delete(
    "/jobs/<job_id>",
    summary="Cancel a job",
    description="Scheduled, pending and retrying jobs only; it never runs, even if its message is already queued.",
    operation_id="cancelJob",
    tags=["jobs"],
    responses={
        200: doc.ok(doc.Job, "The cancelled job"),
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE", "CONFLICT"),
    },
)
def cancel_job(job_id: JobId) -> Response[str]:
    rt = runtime()
    job = manage.cancel_job(
        rt.repo,
        caller_tenant(app),
        job_id,
        system_clock,
        queue=rt.queue,
        pending_grace_seconds=rt.settings.pending_grace_seconds,
        after_final=batch_settler().job_final,
    )
    return json_response(200, _record(job))


@app.post(
    "/jobs/<job_id>/retry",
    summary="Run a failed or cancelled job again",
    description="Back to pending with attempts reset; the history is kept.",
    operation_id="retryJob",
    tags=["jobs"],
    responses={
        202: doc.ok(doc.Job, "Accepted: the job, pending again", LOCATION),
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE", "CONFLICT"),
    },
)
def retry_job(job_id: JobId) -> Response[str]:
    rt = runtime()
    job = manage.retry_job(
        rt.repo, rt.queue, caller_tenant(app), job_id, system_clock, rt.settings.pending_grace_seconds
    )
    return json_response(202, _record(job), headers={"Location": f"/jobs/{job.id}"})


# --- uploads ---


@app.post(
    "/uploads",
    summary="Get a presigned URL to upload an image",
    description="PUT the file to `uploadUrl` with `headers`, then give `key` to an image job.",
    operation_id="createUpload",
    tags=["uploads"],
    responses={
        201: doc.ok(doc.UploadTicket, "Created: where and how to upload"),
        **doc.keyed_errors("INVALID_BODY", "INVALID_UPLOAD", "PAYLOAD_TOO_LARGE"),
    },
    openapi_extensions=doc.json_body(doc.UploadRequest, "The file", {"contentType": "image/png", "size": 48213}),
)
def create_upload() -> Response[str]:
    tenant = caller_tenant(app)
    rt = runtime()
    request = uploads.parse_upload_request(read_json_body(app), rt.settings.upload_max_bytes)
    expiry = rt.settings.presign_expiry_seconds
    return json_response(201, uploads.create_upload(request, tenant, files(), system_clock, expiry))


# --- stats and types ---


@app.get(
    "/stats",
    summary="Counts by status",
    description="Exact counts of the tenant's jobs by status, with completion and failure rates.",
    operation_id="getStats",
    tags=["stats"],
    responses={200: doc.ok(doc.Stats, "The tenant's stats"), **doc.keyed_errors()},
)
def stats() -> Response[str]:
    return json_response(200, manage.job_stats(runtime().repo, caller_tenant(app)))


@app.get(
    "/stats/throughput",
    summary="Completions and failures per minute",
    description="One bucket per minute (UTC) of the last `minutes`, oldest first, the current minute last.",
    operation_id="getThroughput",
    tags=["stats"],
    responses={200: doc.ok(doc.Throughput, "The tenant's throughput"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        doc.query_param(
            "minutes", "How many minutes", {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60}
        )
    ),
)
def throughput() -> Response[str]:
    tenant = caller_tenant(app)
    query = dict(app.current_event.query_string_parameters or {})
    return json_response(200, manage.throughput(runtime().repo, tenant, query, system_clock()))


@app.get(
    "/types",
    summary="The job types",
    description="Every registered job type with its payload's JSON Schema, sorted by name.",
    operation_id="listTypes",
    tags=["types"],
    responses={200: doc.ok(doc.JobTypes, "The job types"), **doc.keyed_errors()},
)
def list_types() -> Response[str]:
    caller_tenant(app)  # the catalogue is the same for everyone, but it is not public
    return json_response(200, {"types": list(catalogue.job_types())})


# --- open: health, the document, the dashboard ---


@app.get(
    "/health",
    summary="Health",
    description="No key needed; does not touch storage.",
    operation_id="health",
    tags=["service"],
    security=doc.OPEN,
    responses={200: doc.ok(doc.Health, "The service is up")},
)
def health() -> Response[str]:
    return json_response(200, {"status": "ok", "service": "jobs", "timestamp": iso(system_clock())})


@app.get(
    "/openapi.json",
    summary="This document",
    description="No key needed. Swagger UI for it is at `/swagger`.",
    operation_id="getOpenApi",
    tags=["service"],
    security=doc.OPEN,
    responses={200: {"description": "The OpenAPI document", "content": {doc.JSON: {"schema": {"type": "object"}}}}},
)
def openapi_document() -> Response[str]:
    body = openapi_json(_base_path())
    return Response(200, doc.JSON, body, headers={"Cache-Control": static.REVALIDATE})


@app.get(
    "/",
    summary="The dashboard",
    description="No key needed (the page asks for one). Served from `functions/dashboard/index.html`.",
    operation_id="dashboard",
    tags=["dashboard"],
    security=doc.OPEN,
    responses={
        200: {"description": "The dashboard's page", "content": {"text/html": {"schema": {"type": "string"}}}},
        301: {
            "description": "To the same URL with a trailing slash (the stage's root), so relative URLs resolve",
            "content": {},
        },
        **doc.errors("NOT_FOUND", notes={"NOT_FOUND": "the dashboard is not part of this deployment"}),
    },
)
def dashboard() -> Response[str]:
    context_path = app.current_event.request_context.path or "/"
    if not context_path.endswith("/"):
        # https://api/prod has no trailing slash: the page's relative URLs would resolve outside the stage.
        return Response(status_code=301, headers={"Location": context_path + "/"}, body="")
    return _static(
        static.DASHBOARD_DIR, "index.html", static.REVALIDATE, {"Content-Security-Policy": static.DASHBOARD_CSP}
    )


@app.get(
    "/assets/<name>",
    summary="A dashboard file",
    description="No key needed. Only plain text files of `functions/dashboard/` (html, js, css, svg, json, map, txt).",
    operation_id="dashboardAsset",
    tags=["dashboard"],
    security=doc.OPEN,
    responses={
        200: {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
        304: {"description": "Not modified (If-None-Match)", "content": {}},
        **doc.errors("NOT_FOUND", notes={"NOT_FOUND": "no such file, or not one that is served"}),
    },
)
def dashboard_asset(name: Annotated[str, PathParam(description="A file name, e.g. app.js")]) -> Response[str]:
    return _static(static.DASHBOARD_DIR, name, static.REVALIDATE)


@app.get("/swagger", include_in_schema=False)
def swagger() -> Response[str]:
    """Swagger UI's page: what Powertools' ``enable_swagger`` serves, with the document inline and the UI's script
    and styles from ``/assets/swagger/`` (a URL relative to /swagger, so it stays inside the stage on AWS).

    Our own route rather than ``enable_swagger``, which imports Powertools' OpenAPI models (~0.1 s) when it is
    called, i.e. at every cold start; here they load only when the page is asked for. ``?format=json`` answers the
    document and ``?format=oauth2-redirect`` the OAuth2 redirect page, as Powertools' route does."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import (
        generate_oauth2_redirect_html,
        generate_swagger_html,
    )

    view = (app.current_event.query_string_parameters or {}).get("format")
    if view == "oauth2-redirect":
        return Response(200, "text/html", generate_oauth2_redirect_html())
    # Escaped as Powertools does, so that no "</script>" in the document can end the page's script.
    spec = openapi_json(_base_path()).replace("</", "<\\/")
    if view == "json":
        return Response(200, doc.JSON, spec)
    base = static.SWAGGER_BASE_URL
    page = generate_swagger_html(
        spec, f"{base}/swagger-ui-bundle.min.js", f"{base}/swagger-ui.min.css", base, None, persist_authorization=True
    )
    return Response(200, "text/html", page)


@app.get("/assets/swagger/<name>", include_in_schema=False)
def swagger_asset(name: str) -> Response[str]:
    return _static(static.SWAGGER_DIR, name, static.CACHE_A_DAY, allowed=static.SWAGGER_ASSETS)


app.include_router(batch_routes.router)
app.include_router(hook_routes.router)


def _static(
    directory: Path,
    name: str,
    cache_control: str,
    extra: dict[str, str] | None = None,
    allowed: frozenset[str] | None = None,
) -> Response[str]:
    file = static.find(directory, name, allowed)
    if file is None:
        raise NotFound(f"no file '{name}'")
    return static.file_response(file, app.current_event.headers.get("if-none-match"), cache_control, extra)


def _base_path() -> str:
    # "/prod" when called on the stage's own URL (execute-api), "" behind a custom domain and in make run.
    return app._get_base_path()


@lru_cache(maxsize=4)
def openapi_json(base_path: str = "") -> str:
    """The OpenAPI document as JSON (the committed ``openapi.json`` is this, with base path "")."""
    from aws_lambda_powertools.event_handler.openapi.models import Server  # only the document needs them

    return app.get_openapi_json_schema(servers=[Server(url=base_path or "/")], **doc.openapi_info())


def _accept(spec: JobSpec, tenant: str) -> Job:
    return _submit(spec, tenant).job


def _submit(spec: JobSpec, tenant: str) -> Accepted:
    rt = runtime()
    accepted = submit(spec, tenant, rt.repo, rt.queue, system_clock, enqueue_settings(rt.settings), files=files)
    if not accepted.replayed:
        emit("JobsEnqueued", 1)
    return accepted


def enqueue_settings(s: Settings) -> EnqueueSettings:
    return EnqueueSettings(
        s.pending_grace_seconds, s.release_ahead_seconds, s.payload_inline_max_bytes, s.idempotency_ttl_seconds
    )


def _record(job: Job) -> dict[str, Any]:
    """One job as the API shows it: with its whole payload, even when that is kept in S3 (listings show a stub)."""
    return with_full_payload(job, files() if job.payload_ref else None).to_api()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
