"""Completion callbacks end to end under moto: API -> consumer -> signed POST to a loopback receiver.

The receiver is a real HTTP server on 127.0.0.1 (admitted by the local stack's outbound allowlist, as in
``make run``); the signing secret is the tenant's webhook secret in (moto) Secrets Manager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from functions.dal import secrets as secrets_dal
from functions.handlers import runtime
from functions.logic.clock import system_clock
from functions.logic.job_types.webhook import verify_signature
from functions.models.job import JobMessage
from tests.integration.harness import TENANT_A, Service, failing_job, ok_job


@dataclass
class Receiver:
    """A callback receiver: answers each POST with the next status (then 200), recording what it got."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/callback"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    secrets_dal.clear_cache()  # cached by name: another test's moto account had another secret
    yield
    secrets_dal.clear_cache()


def with_settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change the functions' settings for this test (the runtime is rebuilt from the environment)."""
    for name, value in values.items():
        monkeypatch.setenv(f"JOBS_{name.upper()}", value)
    runtime.reset()


def tenant_secret(service: Service) -> str:
    name = f"{service.settings.webhook_secret_prefix}{TENANT_A}"
    return str(boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def test_a_completed_jobs_record_is_posted_signed_and_the_callback_recorded(
    service: Service, receiver: Receiver
) -> None:
    # Given a job with a callback URL
    job = service.create_job(ok_job(callbackUrl=receiver.url))
    assert job["callback"] == {"url": receiver.url, "attempts": 0}
    # When the consumer runs it (and then its callback message)
    service.drain()
    # Then the receiver got one POST: the final record, signed with the tenant's webhook secret
    [(headers, body)] = receiver.received
    record = service.job(job["id"])
    sent = json.loads(body)
    assert (sent["id"], sent["status"], sent["result"]) == (job["id"], "completed", record["result"])
    assert sent["callback"]["status"] == "pending"
    assert verify_signature(tenant_secret(service), headers["x-jobs-signature"], body)
    assert headers["idempotency-key"].startswith(f"{job['id']}:")
    assert headers["x-jobs-attempt"] == "1"
    # And the record shows the callback delivered
    assert record["callback"]["status"] == "delivered"
    assert record["callback"]["attempts"] == 1
    assert record["callback"]["deliveredAt"] >= record["completedAt"]
    assert service.record(job["id"]).sweep_at is None


def test_a_failing_receiver_is_retried_then_delivered(service: Service, receiver: Receiver) -> None:
    # Given a receiver that answers 503 once
    receiver.statuses = [503]
    job = service.create_job(ok_job(callbackUrl=receiver.url))
    # When the queue is drained (the callback message comes back after its backoff)
    service.drain()
    # Then the second attempt was delivered, with the same idempotency key
    assert len(receiver.received) == 2
    assert [headers["x-jobs-attempt"] for headers, _ in receiver.received] == ["1", "2"]
    assert len({headers["idempotency-key"] for headers, _ in receiver.received}) == 1
    callback = service.job(job["id"])["callback"]
    assert (callback["status"], callback["attempts"]) == ("delivered", 2)
    assert "lastError" not in callback


def test_a_receiver_that_keeps_failing_fails_the_callback_after_the_maximum_attempts(
    service: Service, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given at most 3 attempts, and a receiver that always answers 500
    with_settings(monkeypatch, callback_max_attempts="3")
    receiver.statuses = [500] * 10
    job = service.create_job(failing_job(max_attempts=1, callbackUrl=receiver.url))
    # When the queue is drained
    service.drain()
    # Then the receiver saw 3 attempts and the callback is failed with the last error; the job stays failed
    assert len(receiver.received) == 3
    assert receiver.bodies()[0]["status"] == "failed"
    record = service.job(job["id"])
    assert record["status"] == "failed"
    assert (record["callback"]["status"], record["callback"]["attempts"]) == ("failed", 3)
    assert "HTTP 500" in record["callback"]["lastError"]
    assert service.record(job["id"]).sweep_at is None


def test_a_refused_address_fails_the_callback_at_once(
    service: Service, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the outbound policy of AWS (no loopback allowed)
    with_settings(monkeypatch, outbound_allowlist="")
    job = service.create_job(ok_job(callbackUrl=receiver.url))
    service.drain()
    # Then nothing reached the receiver and the callback failed on its first attempt
    assert receiver.received == []
    callback = service.job(job["id"])["callback"]
    assert (callback["status"], callback["attempts"]) == ("failed", 1)
    assert "loopback" in callback["lastError"]


def test_a_cancelled_job_reports_its_cancellation(service: Service, receiver: Receiver) -> None:
    # Given a job scheduled far ahead (nothing queued for it yet), with a callback URL
    job = service.create_job(ok_job(callbackUrl=receiver.url, delaySeconds=3600))
    # When it is cancelled
    status, cancelled, _ = service.api("DELETE", f"/jobs/{job['id']}")
    assert status == 200
    assert cancelled["callback"]["status"] == "pending"
    service.drain()
    # Then the receiver got the cancelled record and the callback is delivered
    assert [body["status"] for body in receiver.bodies()] == ["cancelled"]
    assert service.job(job["id"])["callback"]["status"] == "delivered"


def test_the_sweeper_resends_a_lost_callback_message(service: Service, receiver: Receiver) -> None:
    # Given a completed job whose callback message was lost (received and deleted without being handled)
    job = service.create_job(ok_job(callbackUrl=receiver.url))
    service.deliver(service.receive())
    [lost] = service.receive()
    assert json.loads(lost["Body"])["kind"] == "callback"
    service.sqs.delete_message(QueueUrl=service.queue_url, ReceiptHandle=lost["ReceiptHandle"])
    assert service.job(job["id"])["callback"]["status"] == "pending"
    # When the sweeper runs before the grace period is over, then nothing is re-sent
    assert service.sweep().callbacks_resent == 0
    # When it runs after the grace period
    grace_ms = (service.settings.pending_grace_seconds + 1) * 1000
    assert service.sweep(lambda: system_clock() + grace_ms).callbacks_resent == 1
    service.drain()
    # Then the callback is delivered, once
    assert len(receiver.received) == 1
    assert service.job(job["id"])["callback"]["status"] == "delivered"


def test_a_duplicate_callback_message_after_delivery_sends_nothing(service: Service, receiver: Receiver) -> None:
    # Given a delivered callback
    job = service.create_job(ok_job(callbackUrl=receiver.url))
    service.drain()
    assert len(receiver.received) == 1
    # When a copy of its callback message arrives
    body = JobMessage(tenant=TENANT_A, jobId=job["id"], kind="callback").to_body()
    service.sqs.send_message(QueueUrl=service.queue_url, MessageBody=body)
    service.drain()
    # Then the receiver gets nothing more
    assert len(receiver.received) == 1


def test_a_retried_job_reports_its_new_final_state_with_a_new_idempotency_key(
    service: Service, receiver: Receiver
) -> None:
    # Given a job that failed and whose callback was delivered
    job = service.create_job(failing_job(max_attempts=1, callbackUrl=receiver.url))
    service.drain()
    service.dead_letters(1)
    # When it is retried (it fails again)
    status, retried, _ = service.api("POST", f"/jobs/{job['id']}/retry")
    assert status == 202
    assert retried["callback"] == {"url": receiver.url, "attempts": 0}
    service.drain()
    service.dead_letters(1)
    # Then a second callback reports it, under another idempotency key
    assert len(receiver.received) == 2
    keys = [headers["idempotency-key"] for headers, _ in receiver.received]
    assert keys[0] != keys[1]
    assert service.job(job["id"])["callback"]["status"] == "delivered"
