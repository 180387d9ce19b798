"""Webhook ingest under moto: POST /hooks/{type} through the API handler, the job run by the consumer.

A tenant's ingest secret is the Secrets Manager secret ``jobs/ingest-signing/<tenant>`` (moto), created here as an
operator would (``jobs hooks secret set``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from functions.dal import secrets as secrets_dal
from functions.handlers import api as api_handler
from functions.logic.job_types.webhook import signature_header
from jobsctl import cli
from local.gateway import authorize, build_event
from local.lambda_context import LocalContext
from tests.integration.harness import TENANT_A, TENANT_B, ApiResponse, Service

SECRET = "whsec_integration"
BODY = json.dumps({"message": "order 42 shipped"}).encode()


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    secrets_dal.clear_cache()
    yield
    secrets_dal.clear_cache()


def post_hook(
    service: Service,
    path: str,
    raw: bytes,
    headers: dict[str, str] | None = None,
    key_id: str | None = None,
    base64_body: bool = False,
) -> ApiResponse:
    """POST raw bytes to the API handler as API Gateway would, with extra headers."""
    key_id = key_id or service.key_a
    value = service.key_values[key_id]
    all_headers = {"content-type": "application/json", "x-api-key": value, **(headers or {})}
    event = build_event("POST", path, all_headers, raw, authorize(value), "127.0.0.1")
    if base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    response = api_handler.handler(event, LocalContext("api", 10))
    out_headers = dict(response.get("headers") or {})
    for name, values in (response.get("multiValueHeaders") or {}).items():
        out_headers[name] = ", ".join(values)
    text = response.get("body") or ""
    return ApiResponse(int(response["statusCode"]), json.loads(text) if text else None, out_headers)


def set_secret(service: Service, tenant: str = TENANT_A, value: str = SECRET) -> None:
    name = f"{service.settings.ingest_secret_prefix}{tenant}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)


def signed(raw: bytes, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    return {"X-Jobs-Signature": signature_header(secret, int(time.time() if at is None else at), raw)}


def test_a_webhook_is_accepted_as_a_job_and_run(service: Service) -> None:
    # Given a tenant without an ingest secret
    # When an external service posts its body to /hooks/message
    status, job, headers = post_hook(service, "/hooks/message", BODY)
    # Then it is accepted as a pending message job with the body as payload
    assert status == 202, job
    assert (job["type"], job["status"], job["payload"]) == ("message", "pending", {"message": "order 42 shipped"})
    assert headers["Location"] == f"/jobs/{job['id']}"
    # And the consumer runs it
    service.drain()
    assert service.job(job["id"])["status"] == "completed"


def test_priority_from_the_query(service: Service) -> None:
    status, job, _ = post_hook(service, "/hooks/message?priority=9", BODY)
    assert (status, job["priority"]) == (202, 9)


def test_a_base64_encoded_body_is_decoded_before_it_is_checked(service: Service) -> None:
    # Given a tenant with a secret, and API Gateway handing the body over base64-encoded (binary media type)
    set_secret(service)
    status, job, _ = post_hook(service, "/hooks/message", BODY, signed(BODY), base64_body=True)
    assert status == 202, job
    assert job["payload"] == {"message": "order 42 shipped"}


def test_the_api_key_is_required(service: Service) -> None:
    event = build_event("POST", "/hooks/message", {"content-type": "application/json"}, BODY, None, "127.0.0.1")
    response = api_handler.handler(event, LocalContext("api", 10))
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (403, "FORBIDDEN")


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        pytest.param(lambda: signed(BODY), True, id="valid"),
        pytest.param(lambda: signed(BODY, at=time.time() - 200), True, id="200 s old"),
        pytest.param(lambda: {}, False, id="missing"),
        pytest.param(lambda: signed(BODY, secret="not-the-secret"), False, id="wrong secret"),
        pytest.param(lambda: signed(b'{"message": "tampered"}'), False, id="other body"),
        pytest.param(lambda: signed(BODY, at=time.time() - 600), False, id="stale"),
        pytest.param(lambda: {"X-Jobs-Signature": "garbage"}, False, id="malformed"),
    ],
)
def test_a_tenant_with_a_secret_gets_only_correctly_signed_webhooks(
    service: Service, headers: Any, accepted: bool
) -> None:
    # Given tenant A configured an ingest secret
    set_secret(service)
    # When a webhook is posted with this signature
    status, body, _ = post_hook(service, "/hooks/message", BODY, headers())
    # Then it is accepted only with a fresh, matching signature; otherwise 401 and nothing is stored
    if accepted:
        assert status == 202, body
    else:
        assert (status, body["code"]) == (401, "INVALID_SIGNATURE")
        assert service.stats()["enqueued"] == 0


def test_the_signature_header_name_is_case_insensitive(service: Service) -> None:
    set_secret(service)
    header = signed(BODY)["X-Jobs-Signature"]
    status, body, _ = post_hook(service, "/hooks/message", BODY, {"x-jobs-signature": header})
    assert status == 202, body


def test_one_tenants_secret_does_not_apply_to_another(service: Service) -> None:
    # Given only tenant A has a secret
    set_secret(service, TENANT_A)
    # Then tenant B's unsigned webhooks are accepted, tenant A's are not
    assert post_hook(service, "/hooks/message", BODY, key_id=service.key_b).status == 202
    assert post_hook(service, "/hooks/message", BODY).status == 401
    assert service.stats(key=service.key_ids[TENANT_B])["enqueued"] == 1


def test_the_body_limit_is_256_kib(service: Service) -> None:
    # Given a webhook-delivery payload (its body takes any JSON) of exactly 256 KiB, and one a byte over
    def body_of(size: int) -> bytes:
        base = {"url": "https://example.com/", "body": ""}
        raw = json.dumps({**base, "body": "x" * (size - len(json.dumps(base, separators=(",", ":"))))})
        return raw.replace(" ", "").encode()

    exact, over = body_of(256 * 1024), body_of(256 * 1024 + 1)
    assert (len(exact), len(over)) == (256 * 1024, 256 * 1024 + 1)
    # Then the first is accepted (its payload kept in S3: larger than an inline record allows) and the second is 413
    status, job, _ = post_hook(service, "/hooks/webhook-delivery", exact)
    assert status == 202, job
    assert service.record(job["id"]).payload_ref is not None
    assert len(service.job(job["id"])["payload"]["body"]) > 256_000
    status, body, _ = post_hook(service, "/hooks/webhook-delivery", over)
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("raw", [b"", b"[1, 2]", b'"hello"', b"{oops", b"\xff\xfe\x00"])
def test_a_body_that_is_not_a_json_object_is_invalid_body(service: Service, raw: bytes) -> None:
    status, body, _ = post_hook(service, "/hooks/message", raw)
    assert (status, body["code"]) == (400, "INVALID_BODY")


def test_an_unknown_type_or_a_body_the_type_refuses_is_400(service: Service) -> None:
    status, body, _ = post_hook(service, "/hooks/nope", BODY)
    assert (status, body["code"]) == (400, "INVALID_TYPE")
    status, body, _ = post_hook(service, "/hooks/message", b'{"event": "order.shipped"}')
    assert (status, body["code"]) == (400, "INVALID_PAYLOAD")
    assert service.stats()["enqueued"] == 0


# --- the operator's side: jobs hooks secret set|show|delete ---


def test_the_cli_sets_shows_and_deletes_a_tenants_ingest_secret(service: Service) -> None:
    runner = CliRunner()
    # Given no secret: show says so and exits 1
    shown = runner.invoke(cli.app, ["hooks", "secret", "show", "--tenant", TENANT_A])
    assert shown.exit_code == 1
    # When the operator sets one (a random value), then it is printed and the API requires signatures
    created = runner.invoke(cli.app, ["hooks", "secret", "set", "--tenant", TENANT_A])
    assert created.exit_code == 0, created.output
    value = created.output.split("Secret: ")[1].strip()
    assert len(value) == 64
    secrets_dal.clear_cache()  # as a new container would see it (a running one within 30 s)
    assert post_hook(service, "/hooks/message", BODY).status == 401
    assert post_hook(service, "/hooks/message", BODY, signed(BODY, secret=value)).status == 202
    # And show prints it; set with --value replaces it
    assert runner.invoke(cli.app, ["hooks", "secret", "show", "--tenant", TENANT_A]).output.strip() == value
    replaced = runner.invoke(cli.app, ["hooks", "secret", "set", "--tenant", TENANT_A, "--value", SECRET])
    assert replaced.exit_code == 0 and "Replaced" in replaced.output
    secrets_dal.clear_cache()
    assert post_hook(service, "/hooks/message", BODY, signed(BODY)).status == 202
    # When it is deleted, then unsigned webhooks are accepted again
    deleted = runner.invoke(cli.app, ["hooks", "secret", "delete", "--tenant", TENANT_A])
    assert deleted.exit_code == 0 and "Deleted" in deleted.output
    secrets_dal.clear_cache()
    assert post_hook(service, "/hooks/message", BODY).status == 202
    assert "had no ingest secret" in runner.invoke(cli.app, ["hooks", "secret", "delete", "--tenant", TENANT_A]).output
