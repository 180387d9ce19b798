"""Fan-out batches: ``POST /jobs/batch`` and ``GET /batches/{id}`` (logic/batches.py)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_json_body
from functions.handlers.runtime import batch_settler, batch_store, files, runtime
from functions.logic.clock import system_clock
from functions.logic.enqueue import enqueue_settings
from functions.models.errors import error_table

# The routes import the batches' logic when first called: POST /jobs and GET /jobs/{id} need none of it at a cold
# start.
router = Router()

BatchId = Annotated[str, PathParam(description=doc.BATCH_ID)]
BATCH_LOCATION = {"Location": "/batches/{id}"}
_SPEC_NOTE = (
    "; for a spec, the message starts with where it is (`jobs[3]: ...`, `onComplete: ...`) and `details` has `at` "
    "(and `index`)"
)


@router.post(
    "/jobs/batch",
    summary="Enqueue a fan-out batch",
    description="Up to 100 jobs, validated all together (one bad spec: a 400 naming it, and nothing is created), "
    "then queued; when every one is final the batch is `completed` (or `completed_with_failures`) and the "
    "`onComplete` job, if given, is enqueued exactly once.",
    operation_id=doc.request_body("createBatch", doc.batch_json_body),
    tags=["jobs"],
    responses={
        200: doc.replayed("BatchAccepted", "batch", BATCH_LOCATION),
        202: doc.ok("BatchAccepted", "Accepted: the batch's id and its jobs' ids", BATCH_LOCATION),
        **doc.errors(
            *doc.ENQUEUE_ERRORS,
            *doc.KEYED_ERRORS,
            notes={
                "INVALID_BODY": "the body is not a JSON object, `jobs` is not a list of 1 to 100 specs, or a spec is "
                "not an object" + _SPEC_NOTE,
                "INVALID_TYPE": error_table()["INVALID_TYPE"].when + _SPEC_NOTE,
                "INVALID_PAYLOAD": error_table()["INVALID_PAYLOAD"].when + _SPEC_NOTE,
                "INVALID_OPTION": "an option of a spec is out of range, a spec has `idempotencyKey` (the batch may), "
                "the onComplete payload is over 64 KiB, or a field is unknown" + _SPEC_NOTE,
                "IDEMPOTENCY_CONFLICT": "this `Idempotency-Key` was used in the last 24 hours with a different "
                "request (`details.batchId` names its batch), or it differs from the body's `idempotencyKey`",
            },
        ),
    },
    openapi_extensions=doc.idempotency_key_header("batch"),
)
def create_batch() -> Response[str]:
    from functions.logic import batches

    tenant = caller_tenant(router)
    rt = runtime()
    settings = enqueue_settings(rt.settings)
    key = router.current_event.headers.get("idempotency-key")  # case-insensitive in Powertools 3
    accepted = batches.create_batch(
        read_json_body(router),
        tenant,
        rt.repo,
        batch_store(),
        rt.queue,
        batch_settler(),
        system_clock,
        settings,
        files,
        idempotency_header=key,
    )
    headers = {"Location": f"/batches/{accepted.batch.id}"}
    view = batches.accepted_view(accepted.batch)
    if accepted.replayed:
        return json_response(200, view, headers={**headers, doc.REPLAYED_HEADER: "true"})
    return json_response(202, view, headers=headers)


@router.get(
    "/batches/<batch_id>",
    summary="Get a fan-out batch",
    description="Its status, its children counted by their current status, their ids, and its onComplete job.",
    operation_id="getBatch",
    tags=["jobs"],
    responses={
        200: doc.ok("Batch", "The batch"),
        **doc.errors("NOT_FOUND", *doc.KEYED_ERRORS, notes={"NOT_FOUND": "no such batch for this tenant"}),
    },
)
def get_batch(batch_id: BatchId) -> Response[str]:
    from functions.logic import batches

    tenant = caller_tenant(router)
    return json_response(200, batches.batch_view(batch_store(), tenant, batch_id))
