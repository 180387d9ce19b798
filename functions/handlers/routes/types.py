"""The job types: ``GET /types``."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response
from functions.logic import catalogue
from functions.models import responses

router = Router()


@router.get(
    "/types",
    summary="The job types",
    description="Every registered job type with its payload's JSON Schema, sorted by name.",
    operation_id="listTypes",
    tags=["types"],
    responses={200: doc.ok(responses.JobTypes, "The job types"), **doc.keyed_errors()},
)
def list_types() -> Response[str]:
    caller_tenant(router)  # the catalogue is the same for everyone, but it is not public
    return json_response(200, {"types": list(catalogue.job_types())})
