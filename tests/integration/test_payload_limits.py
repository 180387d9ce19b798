"""Request bodies against the three limits on their way in, through the local gateway as on AWS.

API Gateway takes bodies up to 10 MB (beyond: 413, its REQUEST_TOO_LARGE response in our JSON shape). Lambda takes
an invoke event under 6 MB (beyond: Lambda refuses the invoke and API Gateway answers 500, INTEGRATION_FAILURE,
rendered by the DEFAULT_5XX response as ``{"error": "Internal server error", "code": "UNAVAILABLE"}``; no gateway
response can tell this failure from another, so it cannot be made a 413 there). The function refuses bodies over
5 MiB with 413 PAYLOAD_TOO_LARGE. The local gateway reproduces all three.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from functions.handlers import api
from functions.settings import Settings
from local.gateway import LAMBDA_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES, LocalGateway
from tests.integration.harness import TENANT_A_KEY, Service

MIB = 1024 * 1024


@pytest.fixture
def gateway(service: Service) -> Iterator[tuple[str, list[int]]]:
    """The local gateway in front of the real API function; yields its URL and the sizes of the bodies invoked."""
    invoked: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        invoked.append(len(event.get("body") or ""))
        return api.handler(event, context)

    local = LocalGateway(handler, "127.0.0.1", 0, 10)
    local.start()
    try:
        yield f"http://127.0.0.1:{local.port}", invoked
    finally:
        local.stop()


def _message_body(message: str) -> bytes:
    return json.dumps({"type": "message", "payload": {"message": message}}).encode()


def _post(url: str, body: bytes) -> tuple[int, Any]:
    response = requests.post(
        f"{url}/jobs", data=body, headers={"x-api-key": TENANT_A_KEY, "Content-Type": "application/json"}, timeout=60
    )
    return response.status_code, response.json()


def test_a_body_over_5_mib_reaching_the_function_is_413_payload_too_large(gateway: tuple[str, list[int]]) -> None:
    url, invoked = gateway
    # Given a body just over the function's limit, whose invoke event is still under Lambda's
    body = _message_body("x" * (5 * MIB))
    # When it is posted
    status, answer = _post(url, body)
    # Then the function answers 413 in our shape
    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE") and set(answer) >= {"error", "code"}
    assert invoked == [len(body)]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("x" * (7 * MIB), id="7-MB-body"),
        # 3.5 MB of escaped quotes: under the API's 5 MiB, but each \" is escaped again in the invoke event
        pytest.param('"' * (7 * MIB // 4), id="quoted-body-under-5-MiB"),
    ],
)
def test_a_body_whose_invoke_event_exceeds_6_mb_fails_as_api_gateway_answers(
    gateway: tuple[str, list[int]], message: str
) -> None:
    url, invoked = gateway
    body = _message_body(message)
    assert len(body) < MAX_REQUEST_BYTES
    # When it is posted
    status, answer = _post(url, body)
    # Then, as on AWS, Lambda is never invoked and the gateway answers 500 in our JSON shape
    assert (status, answer) == (500, {"error": "Internal server error", "code": "UNAVAILABLE"})
    assert invoked == []


def test_a_body_over_10_mb_is_413_from_the_gateway(gateway: tuple[str, list[int]]) -> None:
    url, invoked = gateway
    status, answer = _post(url, _message_body("x" * (MAX_REQUEST_BYTES + 1)))
    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE") and invoked == []


def test_the_functions_body_limit_leaves_room_for_the_invoke_event() -> None:
    # The API's own limit must sit below Lambda's, or no body would ever get the function's 413
    assert Settings.payload_max_bytes < LAMBDA_MAX_REQUEST_BYTES - 64 * 1024
