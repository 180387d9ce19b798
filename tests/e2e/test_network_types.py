"""webhook-delivery and fetch over HTTP against the local stack (``make run`` allowlists loopback for its jobs)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from functions.logic.job_types.webhook import verify_signature
from tests.e2e.conftest import Client, LocalStackProcess, tenant_of

pytestmark = pytest.mark.e2e

FINAL = {"completed", "failed", "cancelled"}
CONTENT = b"fetched over loopback " * 50


@dataclass
class Receiver:
    port: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    got_one: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            content = CONTENT if self.path == "/file.txt" else b""
            self.send_response(200 if content else 202)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
            state.got_one.set()

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def tenant_name(stack: LocalStackProcess, client: Client) -> str:
    return tenant_of(stack, client.key)


def test_a_webhook_job_delivers_a_signed_request(stack: LocalStackProcess, tenant: Client, receiver: Receiver) -> None:
    # Given
    job = tenant.enqueue({"type": "webhook-delivery", "payload": {"url": receiver.url("/hook"), "body": {"order": 42}}})
    # When
    done = tenant.wait_for(job["id"], FINAL)
    # Then
    assert done["status"] == "completed", done
    assert done["result"] == {"status": 202, "attempt": 1}
    [(method, path, headers, body)] = receiver.requests
    assert (method, path, body) == ("POST", "/hook", b'{"order":42}')
    assert headers["idempotency-key"] == job["id"]
    # and the signature verifies with the tenant's secret, read from Secrets Manager as the README shows
    secret_id = f"jobs/webhook-signing/{tenant_name(stack, tenant)}"
    secret = stack.aws("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    assert verify_signature(secret, headers["x-jobs-signature"], body)


def test_a_fetch_job_stores_the_body_and_its_result_names_the_key(tenant: Client, receiver: Receiver) -> None:
    # Given
    job = tenant.enqueue({"type": "fetch", "payload": {"url": receiver.url("/file.txt")}})
    # When
    done = tenant.wait_for(job["id"], FINAL)
    # Then
    assert done["status"] == "completed", done
    result = done["result"]
    assert result["key"] == f"fetched/{job['id']}"
    assert result["size"] == len(CONTENT) and result["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    # and the stored object can be downloaded through the result route
    response = tenant.get(f"/jobs/{job['id']}/result", allow_redirects=False)
    assert response.status_code in (200, 302), response.text
    url = response.headers["Location"] if response.status_code == 302 else response.json()["url"]
    assert requests.get(url, timeout=10).content == CONTENT


def test_invalid_network_payloads_are_refused_at_enqueue(tenant: Client) -> None:
    for payload in (
        {"type": "fetch", "payload": {"url": "file:///etc/passwd"}},
        {"type": "webhook-delivery", "payload": {"url": "http://x.example/", "body": {}, "headers": {"Host": "y"}}},
        {"type": "crawl-website", "payload": {"url": "https://example.com/", "maxPages": 501}},
    ):
        response = tenant.post("/jobs", payload)
        assert response.status_code == 400 and response.json()["code"] == "INVALID_PAYLOAD", response.text
