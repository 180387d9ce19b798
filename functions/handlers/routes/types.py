"""The job types: ``GET /types``, and pausing one for the caller's tenant (``POST /types/{type}/pause|resume``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response
from functions.handlers.runtime import pause_store
from functions.logic.clock import system_clock
from functions.logic.job_types import registered_types

# The routes import the pauses' logic when first called: POST /jobs and GET /jobs/{id} need none of it at a cold
# start.
router = Router()


@router.get(
    "/types",
    summary="The job types",
    description="Every registered job type with its payload's JSON Schema, sorted by name, and whether it is "
    "paused for the caller's tenant.",
    operation_id="listTypes",
    tags=["types"],
    responses={200: doc.ok("JobTypes", "The job types"), **doc.keyed_errors()},
)
def list_types() -> Response[str]:
    from functions.logic import pauses

    tenant = caller_tenant(router)
    return json_response(200, {"types": pauses.job_types_for(pause_store(), tenant)})


TypeName = Annotated[str, PathParam(include_in_schema=False)]
# Declared here rather than from the signature, to list the types (as POST /hooks/{type} does).
_TYPE_PARAMETER = doc.parameters(
    {
        **doc.path_param("type", "A registered job type (GET /types)"),
        "schema": {"type": "string", "enum": registered_types()},
    }
)
_PAUSE_ERRORS = doc.errors(
    "INVALID_TYPE",
    *doc.KEYED_ERRORS,
    notes={"INVALID_TYPE": "`type` in the path is not a registered job type; the message lists the types"},
)


@router.post(
    "/types/<type>/pause",
    summary="Pause a job type",
    description="For the caller's tenant: its jobs of this type are still accepted, and wait (pending) without "
    "starting or using up attempts until the type is resumed. Pausing a paused type changes nothing.",
    operation_id="pauseType",
    tags=["types"],
    responses={200: doc.ok("TypePause", "The type, now paused"), **_PAUSE_ERRORS},
    openapi_extensions=_TYPE_PARAMETER,
)
def pause_type(type: TypeName) -> Response[str]:
    from functions.logic import pauses

    tenant = caller_tenant(router)
    return json_response(200, pauses.set_paused(pause_store(), tenant, type, True, system_clock()))


@router.post(
    "/types/<type>/resume",
    summary="Resume a paused job type",
    description="For the caller's tenant: its waiting jobs of this type start again within seconds of a short "
    "pause, within about a minute of a long one. Resuming a type that is not paused changes nothing.",
    operation_id="resumeType",
    tags=["types"],
    responses={200: doc.ok("TypePause", "The type, now running"), **_PAUSE_ERRORS},
    openapi_extensions=_TYPE_PARAMETER,
)
def resume_type(type: TypeName) -> Response[str]:
    from functions.logic import pauses

    tenant = caller_tenant(router)
    return json_response(200, pauses.set_paused(pause_store(), tenant, type, False, system_clock()))
