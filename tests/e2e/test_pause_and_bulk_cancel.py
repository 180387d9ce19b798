"""Pausing a job type and cancelling matching jobs, over HTTP against the local stack (``make run``)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Client

pytestmark = pytest.mark.e2e

OK = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}


def _paused(client: Client, name: str) -> bool:
    response = client.get("/types")
    assert response.status_code == 200, response.text
    return bool(next(t for t in response.json()["types"] if t["name"] == name)["paused"])


def test_a_paused_type_waits_and_runs_within_seconds_of_resume(tenant: Client) -> None:
    # Given simulate is paused for this tenant
    response = tenant.post("/types/simulate/pause")
    assert (response.status_code, response.json()) == (200, {"type": "simulate", "paused": True})
    assert _paused(tenant, "simulate")

    # When a job is enqueued, it is accepted and waits: pending, no attempt used
    job = tenant.enqueue({**OK, "maxAttempts": 1})
    time.sleep(3)
    waiting = tenant.get(f"/jobs/{job['id']}").json()
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)

    # When the type is resumed, the job runs within seconds, on its one attempt
    resumed_at = time.monotonic()
    response = tenant.post("/types/simulate/resume")
    assert (response.status_code, response.json()) == (200, {"type": "simulate", "paused": False})
    done = tenant.wait_for(job["id"], {"completed", "failed"}, timeout=15)
    assert (done["status"], done["attempts"]) == ("completed", 1)
    assert time.monotonic() - resumed_at < 10
    assert not _paused(tenant, "simulate")


def test_an_unknown_type_cannot_be_paused(tenant: Client) -> None:
    response = tenant.post("/types/no-such-type/pause")
    assert response.status_code == 400 and response.json()["code"] == "INVALID_TYPE"


def test_bulk_cancel_cancels_the_waiting_jobs_and_leaves_final_ones(tenant: Client) -> None:
    # Given a completed job, and three waiting behind a pause
    done = tenant.enqueue(OK)
    tenant.wait_for(done["id"], {"completed"})
    assert tenant.post("/types/simulate/pause").status_code == 200
    time.sleep(2.5)  # consumers that just ran one may still see it running for their cache's 2 s
    waiting = [tenant.enqueue(OK) for _ in range(3)]

    # When every cancellable simulate job is cancelled
    response = tenant.post("/jobs/cancel", {"type": "simulate"})

    # Then the three are, and the completed one is left alone
    assert (response.status_code, response.json()) == (200, {"cancelled": 3})
    assert {tenant.get(f"/jobs/{job['id']}").json()["status"] for job in waiting} == {"cancelled"}
    assert tenant.get(f"/jobs/{done['id']}").json()["status"] == "completed"
    assert tenant.post("/types/simulate/resume").status_code == 200
    # And a filter that names a status that cannot be cancelled is refused
    refused = tenant.post("/jobs/cancel", {"status": "completed"})
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_OPTION"
