"""Files: ``POST /uploads`` (a presigned PUT for an image) and ``GET /jobs/{id}/result`` (a job's result or file)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from pydantic import ValidationError

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_json_body, read_query
from functions.handlers.routes.jobs import known_id
from functions.handlers.runtime import files, runtime
from functions.logic import results, uploads
from functions.logic.clock import system_clock
from functions.models.errors import InvalidQuery, InvalidUpload

router = Router()

REDIRECT_VALUES = ("1", "true")


@router.get(
    "/jobs/<job_id>/result",
    summary="Get a completed job's result",
    description="When the result names a file (image outputs, fetched pages, crawls, the caller's uploads): a "
    "presigned GET for it, or a 302 to it with `redirect=true`. Otherwise `{result}`.",
    operation_id="getJobResult",
    tags=["jobs"],
    responses={
        200: {
            "description": "A presigned URL for the result's file, or the result itself",
            "content": {doc.JSON: doc.model_content("FileResult|InlineResult")},
        },
        302: {
            "description": "With `redirect=true` and a file result: to the presigned URL",
            "content": {},
            "headers": {"Location": {"description": "The presigned URL", "schema": {"type": "string"}}},
        },
        **doc.keyed_errors("NOT_FOUND", "INVALID_STATE", "INVALID_QUERY"),
    },
    openapi_extensions=doc.parameters(
        doc.path_param("job_id", doc.JOB_ID),
        doc.query_param(
            "redirect", "`1` or `true`: answer 302 to the file", {"type": "string", "enum": list(REDIRECT_VALUES)}
        ),
    ),
)
def get_job_result(job_id: Annotated[str, PathParam(include_in_schema=False)]) -> Response[str]:
    rt = runtime()
    tenant = caller_tenant(router)
    query = read_query(router, {"redirect"})
    if "redirect" in query and query["redirect"] not in REDIRECT_VALUES:
        raise InvalidQuery(f"'redirect' must be one of: {', '.join(REDIRECT_VALUES)}")
    expiry = rt.settings.presign_expiry_seconds
    body = results.job_result(rt.repo, files(), tenant, known_id(job_id), system_clock, expiry)
    if "url" in body and "redirect" in query:
        return Response(status_code=302, headers={"Location": body["url"]}, body="")
    return json_response(200, body)


@router.post(
    "/uploads",
    summary="Get a presigned URL to upload an image",
    description="PUT the file to `uploadUrl` with `headers`, then give `key` to an image job.",
    operation_id=doc.request_body("createUpload", doc.upload_body),
    tags=["uploads"],
    responses={
        201: doc.ok("UploadTicket", "Created: where and how to upload"),
        **doc.keyed_errors("INVALID_BODY", "INVALID_UPLOAD", "PAYLOAD_TOO_LARGE"),
    },
)
def create_upload() -> Response[str]:
    tenant = caller_tenant(router)
    rt = runtime()
    request = _upload_request(read_json_body(router), rt.settings.upload_max_bytes)
    expiry = rt.settings.presign_expiry_seconds
    return json_response(201, uploads.create_upload(request, tenant, files(), system_clock, expiry))


def _upload_request(body: object, max_bytes: int) -> uploads.UploadRequest:
    """``doc.UploadRequest`` applied to the body (exactly what the document says), then the configured limit."""
    details = {"contentTypes": sorted(uploads.UPLOAD_TYPES), "maxBytes": max_bytes}
    if not isinstance(body, dict):
        raise InvalidUpload("the body must be a JSON object {contentType, size}", details=details)
    try:
        request = doc.UploadRequest.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
        if unknown:
            raise InvalidUpload(f"unknown field(s): {', '.join(unknown)}", details=details) from exc
        if any(err["loc"][:1] == ("contentType",) for err in errors):
            types = ", ".join(sorted(uploads.UPLOAD_TYPES))
            raise InvalidUpload(f"'contentType' must be one of: {types}", details=details) from exc
        raise InvalidUpload(_size_message(max_bytes), details=details) from exc
    if request.size > max_bytes:
        raise InvalidUpload(_size_message(max_bytes), details=details)
    return uploads.UploadRequest(content_type=request.contentType, size=request.size)


def _size_message(max_bytes: int) -> str:
    return f"'size' must be an integer number of bytes from 1 to {max_bytes}"
