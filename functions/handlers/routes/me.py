"""``GET /me``: the caller's key as the service sees it (the dashboard hides its write controls for a read key)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.handlers import openapi as doc
from functions.handlers.http import caller, json_response

router = Router()


@router.get(
    "/me",
    summary="The caller's key",
    description="The tenant, id, scope (`full` or `read`) and rate limit of the `x-api-key` sent; never its value.",
    operation_id="getCaller",
    tags=["service"],
    responses={200: doc.ok("CallerKey", "The caller's key"), **doc.keyed_errors()},
)
def me() -> Response[str]:
    key = caller(router)
    body = {
        "tenant": key.tenant,
        "keyId": key.key_id,
        "scope": key.scope,
        "rateLimit": key.rate_limit,
        "burstLimit": key.burst_limit,
    }
    return json_response(200, body)
