"""Tenant keys over HTTP against the local stack: `jobs keys ...` as an operator runs it, scopes, ``GET /me``, and
per-key rate limits (``429 RATE_LIMITED`` with ``Retry-After``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from tests.e2e.conftest import KEYS_TABLE, ROOT, Client, LocalStackProcess, add_key

# The local stack's authorizer cache (infra.config local_config: JOBS_LOCAL_AUTHORIZER_CACHE_SECONDS).
LOCAL_CACHE_SECONDS = 2


def keys_cli(stack: LocalStackProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`jobs keys ...` with an operator's credentials on the local AWS (the moto server)."""
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=stack.moto_url,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
    )
    return subprocess.run(
        [sys.executable, "-m", "jobsctl", "keys", *args, "--table", KEYS_TABLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_key_created_with_the_cli_works_at_once_and_stops_after_revocation(stack: LocalStackProcess) -> None:
    # When an operator creates a read key for a new tenant
    tenant = f"cli-{os.urandom(4).hex()}"
    created = keys_cli(stack, "create", "--tenant", tenant, "--scope", "read", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)

    # Then it works at once, for that tenant, read only
    client = Client(stack.url, key["value"])
    me = client.get("/me")
    assert me.status_code == 200, me.text
    assert me.json()["tenant"] == tenant and me.json()["scope"] == "read" and me.json()["keyId"] == key["id"]
    assert client.get("/stats").status_code == 200
    refused = client.post("/jobs", {"type": "simulate", "payload": {"target": "a.png"}})
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")

    # When it is revoked: listed as revoked, and refused once the gateway's cached answer has expired
    revoked = keys_cli(stack, "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    listed = json.loads(keys_cli(stack, "list", "--tenant", tenant, "--json").stdout)
    assert [(k["id"], bool(k["revokedAt"])) for k in listed] == [(key["id"], True)]
    time.sleep(LOCAL_CACHE_SECONDS + 0.5)
    gone = client.get("/stats")
    assert (gone.status_code, gone.json()) == (403, {"error": "Forbidden", "code": "FORBIDDEN"})


def test_a_rotated_key_gets_a_new_value_and_the_old_one_stops_working(stack: LocalStackProcess) -> None:
    created = json.loads(keys_cli(stack, "create", "--tenant", "rotating", "--json").stdout)
    rotated = keys_cli(stack, "rotate", created["id"], "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_value = json.loads(rotated.stdout)["value"]
    time.sleep(LOCAL_CACHE_SECONDS + 0.5)
    assert Client(stack.url, new_value).get("/me").json()["keyId"] == created["id"]
    assert Client(stack.url, created["value"]).get("/me").status_code == 403


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not(
    stack: LocalStackProcess, tenant: Client
) -> None:
    # Given a second key of the tenant allowed 1 request/s with a burst of 4 (4 per 4 s window)
    tenant_name = tenant.get("/me").json()["tenant"]
    value = f"limited-{os.urandom(12).hex()}"
    add_key(stack, value, tenant_name, rate_limit=1, burst_limit=4)
    limited = Client(stack.url, value)

    # When it sends 10 requests at once
    answers = [limited.get("/stats") for _ in range(10)]

    # Then at most 8 (two windows, if one ended meanwhile) are served, and the rest are 429 RATE_LIMITED in our shape
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) + len(refused) == 10 and 1 <= len(served) <= 8 and refused
    for answer in refused:
        body = answer.json()
        assert body["code"] == "RATE_LIMITED" and "rate limit" in body["error"]
        assert 1 <= int(answer.headers["Retry-After"]) <= 4
        assert body["details"] == {"retryAfterSeconds": int(answer.headers["Retry-After"])}
    # And the tenant's own key is not slowed by it
    assert tenant.get("/stats").status_code == 200
    # And after Retry-After, the key is served again
    time.sleep(int(refused[-1].headers["Retry-After"]))
    assert limited.get("/stats").status_code == 200


def test_a_missing_key_is_refused_by_the_gateway_in_the_apis_shape(stack: LocalStackProcess) -> None:
    response = requests.get(stack.url + "/me", timeout=5)
    assert (response.status_code, response.json()) == (403, {"error": "Forbidden", "code": "FORBIDDEN"})
