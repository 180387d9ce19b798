"""The API resolver keeps each request to its own thread (the local stack serves concurrent requests on threads)."""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.handlers.http import RequestScopedResolver


def rest_event(method: str, path: str, body: str) -> dict[str, Any]:
    return {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "headers": {"content-type": "application/json"},
        "queryStringParameters": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {"path": path, "stage": "prod", "identity": {}},
    }


def bodies_seen_by_two_overlapping_requests(app: APIGatewayRestResolver) -> dict[str, str]:
    """Request A reads its body only after request B has been resolved as far as its own route."""
    router = Router()
    a_entered, b_entered = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    @app.post("/a")
    def route_a() -> dict[str, str]:
        a_entered.set()
        b_entered.wait(5)  # B's event is now the current one, if the resolver shares it
        seen["a"] = app.current_event.body or ""
        return {}

    @router.post("/b")
    def route_b() -> dict[str, str]:
        b_entered.set()
        seen["b"] = router.current_event.body or ""
        return {}

    app.include_router(router)
    first = threading.Thread(target=app.resolve, args=(rest_event("POST", "/a", "body of A"), None))
    first.start()
    assert a_entered.wait(5)
    app.resolve(rest_event("POST", "/b", "body of B"), None)  # type: ignore[arg-type]
    first.join(5)
    return seen


def test_overlapping_requests_each_read_their_own_body() -> None:
    # Given the API's resolver, When two requests overlap on two threads
    seen = bodies_seen_by_two_overlapping_requests(RequestScopedResolver())
    # Then each route read its own request (the app's route and a router's route alike)
    assert seen == {"a": "body of A", "b": "body of B"}


def test_powertools_own_resolver_shares_the_request_between_threads() -> None:
    # Why the subclass exists: Powertools keeps the current request on a class attribute (if this starts failing,
    # Powertools has made it per thread and RequestScopedResolver can go)
    seen = bodies_seen_by_two_overlapping_requests(APIGatewayRestResolver())
    assert seen["a"] == "body of B"


def test_the_lambda_context_is_per_request_too() -> None:
    # Given the API's resolver with a route that reports the context it was given
    app = RequestScopedResolver()
    marker = object()

    @app.get("/ctx")
    def route() -> dict[str, bool]:
        return {"mine": app.lambda_context is marker}

    # When it resolves a request with that context, Then the route sees it
    response = app.resolve(rest_event("GET", "/ctx", ""), marker)  # type: ignore[arg-type]
    assert response["body"] == '{"mine":true}'
