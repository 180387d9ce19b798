"""Webhook ingest over HTTP against the local stack: POST /hooks/{type}, with and without the tenant's secret."""

from __future__ import annotations

import json
import time

import pytest

from functions.logic.job_types.webhook import signature_header
from tests.e2e.conftest import Client, LocalStackProcess, settled, tenant_of

pytestmark = pytest.mark.e2e

BODY = json.dumps({"message": "payment received"}).encode()
FINAL = {"completed", "failed", "cancelled"}


def post_hook(client: Client, path: str, raw: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    response = client.request("POST", path, data=raw, headers={"Content-Type": "application/json", **(headers or {})})
    return response.status_code, response.json()


def tenant_name(stack: LocalStackProcess, client: Client) -> str:
    return tenant_of(stack, client.key)


def test_a_webhook_becomes_a_job_that_runs(tenant: Client) -> None:
    # When an external service posts its event to /hooks/message
    status, job = post_hook(tenant, "/hooks/message", BODY)
    # Then it is accepted at once and the job runs with the body as its payload
    assert status == 202, job
    assert job["payload"] == {"message": "payment received"}
    done = tenant.wait_for(job["id"], FINAL)
    assert done["status"] == "completed"


def test_with_an_ingest_secret_only_signed_webhooks_are_accepted(stack: LocalStackProcess, tenant: Client) -> None:
    # Given the operator set the tenant's ingest secret (as `jobs hooks secret set --tenant` does)
    secret = "whsec_e2e_" + tenant.key[-8:]
    name = f"jobs/ingest-signing/{tenant_name(stack, tenant)}"
    stack.aws("secretsmanager").create_secret(Name=name, SecretString=secret)
    # Then an unsigned, a wrongly signed and a stale webhook are refused with 401
    now = int(time.time())
    for headers in (
        {},
        {"X-Jobs-Signature": signature_header("wrong", now, BODY)},
        {"X-Jobs-Signature": signature_header(secret, now - 400, BODY)},
    ):
        status, body = post_hook(tenant, "/hooks/message", BODY, headers)
        assert (status, body["code"]) == (401, "INVALID_SIGNATURE")
    # And a correctly signed one is accepted and runs
    status, job = post_hook(tenant, "/hooks/message", BODY, {"X-Jobs-Signature": signature_header(secret, now, BODY)})
    assert status == 202, job
    assert tenant.wait_for(job["id"], FINAL)["status"] == "completed"
    assert settled(lambda: tenant.get("/stats").json())["enqueued"] == 1


def test_limits_and_bad_bodies(tenant: Client) -> None:
    status, body = post_hook(tenant, "/hooks/message", b"x" * (256 * 1024 + 1))
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    status, body = post_hook(tenant, "/hooks/message", b"[1, 2, 3]")
    assert (status, body["code"]) == (400, "INVALID_BODY")
    status, body = post_hook(tenant, "/hooks/no-such-type", BODY)
    assert (status, body["code"]) == (400, "INVALID_TYPE")
