"""Completion callbacks over HTTP against the local stack: the signed POST of the final record to a loopback URL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions.logic.job_types.webhook import verify_signature
from tests.e2e.conftest import Client, LocalStackProcess, tenant_of

pytestmark = pytest.mark.e2e

OK_JOB = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}


@dataclass
class Receiver:
    """Answers each POST with the next status (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jobs-done"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def wait_for_callback(client: Client, job_id: str, statuses: set[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = dict(client.get(f"/jobs/{job_id}").json())
        if job.get("callback", {}).get("status") in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"callback of {job_id} not {statuses} after {timeout}s: {job.get('callback')}")
        time.sleep(0.2)


def tenant_secret(stack: LocalStackProcess, client: Client) -> str:
    tenant = tenant_of(stack, client.key)
    secret = stack.aws("secretsmanager").get_secret_value(SecretId=f"jobs/webhook-signing/{tenant}")
    return str(secret["SecretString"])


def test_a_completed_job_posts_its_signed_record_to_the_callback_url(
    stack: LocalStackProcess, tenant: Client, receiver: Receiver
) -> None:
    # Given a job with a callback URL
    job = tenant.enqueue({**OK_JOB, "callbackUrl": receiver.url})
    # When it completes, then its callback is delivered and shown on the record
    done = wait_for_callback(tenant, job["id"], {"delivered", "failed"})
    assert done["status"] == "completed"
    assert (done["callback"]["status"], done["callback"]["attempts"]) == ("delivered", 1)
    # And the receiver got the final record, signed with the tenant's secret
    [(headers, body)] = receiver.received
    sent = json.loads(body)
    assert (sent["id"], sent["status"], sent["result"]) == (job["id"], "completed", done["result"])
    assert verify_signature(tenant_secret(stack, tenant), headers["x-jobs-signature"], body)
    assert headers["idempotency-key"].startswith(job["id"] + ":")


def test_a_failing_receiver_gets_the_callback_again_after_a_backoff(tenant: Client, receiver: Receiver) -> None:
    receiver.statuses = [503]
    job = tenant.enqueue({**OK_JOB, "callbackUrl": receiver.url})
    done = wait_for_callback(tenant, job["id"], {"delivered", "failed"})
    assert (done["callback"]["status"], done["callback"]["attempts"]) == ("delivered", 2)
    assert [headers["x-jobs-attempt"] for headers, _ in receiver.received] == ["1", "2"]


def test_a_cancelled_job_reports_its_cancellation(tenant: Client, receiver: Receiver) -> None:
    # Given a job scheduled an hour ahead, with a callback URL
    job = tenant.enqueue({**OK_JOB, "delaySeconds": 3600, "callbackUrl": receiver.url})
    # When it is cancelled
    assert tenant.delete(f"/jobs/{job['id']}").status_code == 200
    # Then the receiver is told
    done = wait_for_callback(tenant, job["id"], {"delivered", "failed"})
    assert done["callback"]["status"] == "delivered"
    assert [json.loads(body)["status"] for _, body in receiver.received] == ["cancelled"]
