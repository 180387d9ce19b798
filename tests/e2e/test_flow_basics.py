"""Over HTTP against `make run`: idempotency keys, long-poll reads and progress on the record."""

from __future__ import annotations

import time

from jobsctl.client import JobsClient
from tests.e2e.conftest import Client, LocalStackProcess, settled

QUICK = {"type": "simulate", "payload": {"target": "e2e.png", "durationMs": 0, "failureRate": 0}}


def test_an_idempotency_key_header_gives_one_job_for_repeated_requests(tenant: Client) -> None:
    # Given a job created with an Idempotency-Key header
    first = tenant.post("/jobs", QUICK, headers={"Idempotency-Key": "e2e-order-1"})
    assert first.status_code == 202, first.text

    # When the client retries the same request, then sends another body with the same key
    again = tenant.post("/jobs", QUICK, headers={"Idempotency-Key": "e2e-order-1"})
    other = tenant.post("/jobs", {**QUICK, "priority": 9}, headers={"Idempotency-Key": "e2e-order-1"})

    # Then the retry is 200 with the same job, the other body is 409, and one job was enqueued
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "IDEMPOTENCY_CONFLICT"
    assert settled(lambda: tenant.get("/stats").json())["enqueued"] == 1


def test_a_long_poll_returns_when_the_job_is_final(tenant: Client) -> None:
    # Given a job that takes about a second
    job = tenant.enqueue({**QUICK, "payload": {**QUICK["payload"], "durationMs": 1000}})

    # When the client waits for it with one request
    started = time.monotonic()
    response = tenant.get(f"/jobs/{job['id']}", params={"wait": 15})
    elapsed = time.monotonic() - started

    # Then that one request returns the completed job, long before the 15 s ran out
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert response.headers["X-Long-Poll"] == "1"
    assert elapsed < 12


def test_the_client_library_waits_with_long_polls(stack: LocalStackProcess, tenant: Client) -> None:
    client = JobsClient(stack.url, tenant.key)
    job = client.enqueue("simulate", {"target": "lp.png", "durationMs": 300, "failureRate": 0})
    done = client.wait(job.id, timeout=30)
    assert done.status == "completed"
    assert client._long_poll is True


def test_progress_shows_on_the_record_while_running_and_after(tenant: Client) -> None:
    # Given a job in ten steps over about 4 s (the local stack writes progress at most every 0.5 s)
    job = tenant.enqueue(
        {"type": "simulate", "payload": {"target": "p.png", "durationMs": 4000, "failureRate": 0, "steps": 10}}
    )

    # When it is read while running
    seen: list[float] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        record = tenant.get(f"/jobs/{job['id']}").json()
        if "progress" in record and record["status"] == "processing":
            seen.append(record["progress"]["percent"])
        if record["status"] == "completed":
            break
        time.sleep(0.2)

    # Then progress was visible mid-run and rose, and the final record ends at 100 %
    assert seen and 0 < min(seen) < 100 and seen == sorted(seen)
    assert record["status"] == "completed" and record["progress"]["percent"] == 100
    assert record["progress"]["message"] == "resize step 10 of 10"
