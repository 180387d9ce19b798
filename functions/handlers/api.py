"""The producer: every HTTP route of the job API (API Gateway REST, Lambda proxy integration)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers.http import caller_tenant, json_response, read_json_body, register_error_handlers
from functions.handlers.runtime import emit, files, logger, metrics, runtime, traced
from functions.logic import manage, results, uploads
from functions.logic.clock import iso, system_clock
from functions.logic.enqueue import EnqueueSettings, JobSpec, enqueue, parse_job_spec, parse_message_request
from functions.logic.payloads import with_full_payload
from functions.models.job import Job

app = APIGatewayRestResolver()
register_error_handlers(app)


@app.get("/health")
def health() -> Response[str]:
    return json_response(200, {"status": "ok", "service": "jobs", "timestamp": iso(system_clock())})


@app.post("/jobs")
def create_job() -> Response[str]:
    job = _accept(parse_job_spec(read_json_body(app), system_clock()))
    return json_response(202, job.to_api(), headers={"Location": f"/jobs/{job.id}"})


@app.post("/enqueue")
def enqueue_message() -> Response[str]:
    job = _accept(parse_message_request(read_json_body(app)))
    body = {"queued": True, "id": job.id, "message": job.payload["message"], "enqueuedAt": job.created_at}
    return json_response(202, body, headers={"Location": f"/jobs/{job.id}"})


@app.get("/jobs")
def list_jobs() -> Response[str]:
    query = app.current_event.query_string_parameters or {}
    page = manage.list_jobs(runtime().repo, caller_tenant(app), dict(query))
    body = {"jobs": [job.to_api() for job in page.jobs], "count": len(page.jobs), "nextCursor": page.next_cursor}
    return json_response(200, body)


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    return json_response(200, _record(manage.get_job(runtime().repo, caller_tenant(app), job_id)))


@app.get("/jobs/<job_id>/result")
def get_job_result(job_id: str) -> Response[str]:
    rt = runtime()
    expiry = rt.settings.presign_expiry_seconds
    body = results.job_result(rt.repo, files(), caller_tenant(app), job_id, system_clock, expiry)
    if "url" in body and app.current_event.get_query_string_value("redirect", "") in ("1", "true"):
        return Response(status_code=302, headers={"Location": body["url"]}, body="")
    return json_response(200, body)


@app.post("/uploads")
def create_upload() -> Response[str]:
    rt = runtime()
    request = uploads.parse_upload_request(read_json_body(app), rt.settings.upload_max_bytes)
    expiry = rt.settings.presign_expiry_seconds
    return json_response(201, uploads.create_upload(request, caller_tenant(app), files(), system_clock, expiry))


@app.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response[str]:
    return json_response(200, _record(manage.cancel_job(runtime().repo, caller_tenant(app), job_id, system_clock)))


@app.post("/jobs/<job_id>/retry")
def retry_job(job_id: str) -> Response[str]:
    rt = runtime()
    job = manage.retry_job(
        rt.repo, rt.queue, caller_tenant(app), job_id, system_clock, rt.settings.pending_grace_seconds
    )
    return json_response(202, _record(job), headers={"Location": f"/jobs/{job.id}"})


@app.get("/stats")
def stats() -> Response[str]:
    return json_response(200, manage.job_stats(runtime().repo, caller_tenant(app)))


def _accept(spec: JobSpec) -> Job:
    rt = runtime()
    s = rt.settings
    settings = EnqueueSettings(s.pending_grace_seconds, s.release_ahead_seconds, s.payload_inline_max_bytes)
    job = enqueue(spec, caller_tenant(app), rt.repo, rt.queue, system_clock, settings, files=files)
    emit("JobsEnqueued", 1)
    return job


def _record(job: Job) -> dict[str, Any]:
    """One job as the API shows it: with its whole payload, even when that is kept in S3 (listings show a stub)."""
    return with_full_payload(job, files() if job.payload_ref else None).to_api()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
