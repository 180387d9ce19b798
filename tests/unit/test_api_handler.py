"""The API function's entry point: what it sets up for each request before routing it."""

from __future__ import annotations

import json

from functions.handlers import api
from functions.handlers.runtime import logger
from local.gateway import build_event
from local.lambda_context import LocalContext


def test_each_request_is_logged_under_its_own_request_id() -> None:
    context = LocalContext("api", 10, 512)
    seen = []
    for _ in range(2):
        # Given a request through API Gateway (a route that needs no AWS call)
        event = build_event("GET", "/openapi.json", {}, b"", None, "127.0.0.1")
        # When the API handles it
        response = api.handler(event, context)
        assert response["statusCode"] == 200 and json.loads(response["body"])["openapi"]
        seen.append((logger.get_current_keys().get("correlation_id"), event["requestContext"]["requestId"]))
    # Then its log lines carry that request's id, a new one for each request
    assert [correlation for correlation, _ in seen] == [request_id for _, request_id in seen]
    assert seen[0][0] != seen[1][0]


def test_an_event_without_a_request_context_has_no_correlation_id() -> None:
    # Given an event with no requestContext (a direct invocation); when the API handles it; then nothing is kept
    # from the request before
    api.handler(build_event("GET", "/openapi.json", {}, b"", None, "127.0.0.1"), LocalContext("api", 10, 512))
    event = build_event("GET", "/openapi.json", {}, b"", None, "127.0.0.1")
    del event["requestContext"]
    api.handler(event, LocalContext("api", 10, 512))
    assert logger.get_current_keys().get("correlation_id") is None
