"""Webhook ingest: ``POST /hooks/<type>``, one documented path per job type (logic in ``logic/ingest.py``)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from functions.dal.clients import client
from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_query
from functions.handlers.runtime import files, runtime
from functions.logic.clock import system_clock
from functions.logic.enqueue import enqueue_settings
from functions.logic.job_types import registered_types
from functions.models.bounds import HOOK_BODY_MAX_BYTES, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from functions.models.errors import InvalidBody, PayloadTooLarge

# The ingest logic and the secrets store are imported when a webhook first arrives: POST /jobs and GET /jobs/{id}
# need neither at a cold start.
router = Router()

_DESCRIPTION = (
    "For external services (payment providers, Git hosts, form builders): the raw body, a JSON object of at most "
    f"{HOOK_BODY_MAX_BYTES // 1024} KiB, becomes the payload of a job of this path's type (validated by the type's "
    "model), answered with 202 as soon as the job is queued. When the tenant configured an ingest secret (`jobs hooks "
    "secret set`), the `X-Jobs-Signature` header must sign the raw body: `t=<unix seconds>,v1=<hex "
    'HMAC-SHA256(secret, "<t>." + body)>`, within 5 minutes of the server\'s clock. One path per job type '
    "(`/hooks/<type>`), each with its type's payload as the body."
)

_RESPONSES = {
    202: doc.ok("Job", "Accepted: the job record (pending)", {"Location": "The job's URL: /jobs/{id}"}),
    **doc.errors(
        "INVALID_BODY",
        "INVALID_PAYLOAD",
        "INVALID_QUERY",
        "INVALID_SIGNATURE",
        "PAYLOAD_TOO_LARGE",
        *doc.KEYED_ERRORS,
        notes={
            "INVALID_BODY": "the body is not a JSON object (empty, not JSON, not UTF-8, or another JSON value)",
            "INVALID_PAYLOAD": "the body does not fit the type's payload model; `details` lists `{field, message}`",
            "INVALID_QUERY": "a query parameter other than `priority`, or `priority` not an integer from 1 to 10",
            "INVALID_SIGNATURE": "the tenant configured an ingest secret and `X-Jobs-Signature` is missing, "
            "malformed, more than 5 minutes old (or ahead), or does not sign this body with it",
            "PAYLOAD_TOO_LARGE": f"the body is larger than {HOOK_BODY_MAX_BYTES // 1024} KiB",
        },
    ),
}

_PARAMETERS = doc.parameters(
    doc.query_param(
        "priority",
        "The job's priority",
        doc.integer_schema(PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT),
    ),
    doc.header_param(
        "X-Jobs-Signature",
        "Required when the tenant configured an ingest secret: `t=<unix s>,v1=<hex HMAC>`",
        {"type": "string"},
    ),
)


def _declare(type_name: str) -> None:
    """``POST /hooks/<type_name>``, documented with the type's payload model as its body."""

    @router.post(
        f"/hooks/{type_name}",
        summary=f"Receive a webhook as a {type_name} job",
        description=_DESCRIPTION,
        operation_id=doc.request_body(f"ingest{doc.pascal(type_name)}Webhook", lambda: _body(type_name)),
        tags=["jobs"],
        responses=_RESPONSES,
        openapi_extensions=_PARAMETERS,
    )
    def ingest_typed_webhook() -> Response[str]:
        return _ingest(type_name)


def _body(type_name: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "The external service's body, byte for byte (signed as sent): the job's payload",
            "content": {doc.JSON: {"schema": doc.payload_schema(type_name)}},
        }
    }


for _name in registered_types():
    _declare(_name)


# Served for every path under /hooks/ (a type not registered is 400 INVALID_TYPE); documented by the paths above.
@router.post("/hooks/<type>", include_in_schema=False)
def ingest_webhook(type: Annotated[str, PathParam(include_in_schema=False)]) -> Response[str]:
    return _ingest(type)


def _ingest(type_name: str) -> Response[str]:
    from functions.dal.secrets import IngestSecrets
    from functions.logic import ingest

    tenant = caller_tenant(router)
    rt = runtime()
    s = rt.settings
    event = router.current_event
    job = ingest.ingest(
        type_name,
        _raw_body(),
        tenant=tenant,
        signature=event.headers.get("x-jobs-signature"),  # case-insensitive in Powertools 3
        secret_for=IngestSecrets(client("secretsmanager"), s.ingest_secret_prefix).secret_for,
        query=read_query(router, set(ingest.QUERY_OPTIONS)),
        repo=rt.repo,
        queue=rt.queue,
        clock=system_clock,
        settings=enqueue_settings(s),
        files=files,
    )
    return json_response(202, job.to_api(), headers={"Location": f"/jobs/{job.id}"})


def _raw_body() -> bytes:
    """The body's bytes as the sender sent them (API Gateway hands binary bodies over base64-encoded)."""
    raw = router.current_event.body or ""
    # base64 is 4/3 the size: refuse a huge body before decoding it.
    if len(raw) > HOOK_BODY_MAX_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge(f"the body is larger than {HOOK_BODY_MAX_BYTES} bytes")
    if not router.current_event.is_base64_encoded:
        return raw.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidBody("the body is not valid base64") from exc
