"""Fan-out batches over HTTP against the local stack (``make run``): the children run on the local consumers, the
batch completes, and its onComplete job runs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Client, settled

pytestmark = pytest.mark.e2e

FINAL_BATCH = {"completed", "completed_with_failures"}


def ok_job(target: str) -> dict[str, Any]:
    return {"type": "simulate", "payload": {"target": target, "durationMs": 0, "failureRate": 0}}


def create_batch(tenant: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = tenant.post("/jobs/batch", body)
    assert response.status_code == 202, response.text
    batch = dict(response.json())
    assert response.headers["Location"] == f"/batches/{batch['id']}"
    return batch


def wait_for_batch(tenant: Client, batch_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = tenant.get(f"/batches/{batch_id}")
        assert response.status_code == 200, response.text
        batch = dict(response.json())
        if batch["status"] in FINAL_BATCH:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch['status']} after {timeout}s: {batch}")
        time.sleep(0.2)


def test_a_batch_of_simulate_jobs_completes_and_its_on_complete_job_runs(tenant: Client) -> None:
    # Given a batch of five simulate jobs that cannot fail, and an onComplete job told the batch's id
    batch = create_batch(
        tenant,
        {
            "jobs": [ok_job(f"{i}.png") for i in range(5)],
            "onComplete": {"type": "message", "payload": {"message": "$batchId"}},
        },
    )
    assert (batch["status"], batch["total"], len(batch["jobIds"])) == ("running", 5, 5)

    # When the local consumers have run them
    done = wait_for_batch(tenant, batch["id"])

    # Then the batch is completed, every child counted as completed
    assert done["status"] == "completed"
    assert done["counts"]["completed"] == 5 and sum(done["counts"].values()) == 5
    assert done["completedAt"] is not None
    # And its onComplete job runs, once, with the batch's id
    follow_up = tenant.wait_for(done["onComplete"]["jobId"], {"completed", "failed"})
    assert (follow_up["status"], follow_up["result"]) == ("completed", batch["id"])
    messages = tenant.get("/jobs", params={"type": "message"}).json()["jobs"]
    assert [job["id"] for job in messages] == [follow_up["id"]]
    # And each child is a job of the batch
    child = tenant.get(f"/jobs/{batch['jobIds'][0]}").json()
    assert (child["batchId"], child["status"]) == (batch["id"], "completed")


def test_a_batch_with_a_failing_child_ends_completed_with_failures(tenant: Client) -> None:
    failing = {"type": "simulate", "payload": {"target": "x", "durationMs": 0, "shouldFail": True}, "maxAttempts": 1}
    batch = create_batch(
        tenant,
        {"jobs": [ok_job("a.png"), failing], "onComplete": {"type": "message", "payload": {"message": "after"}}},
    )

    done = wait_for_batch(tenant, batch["id"])

    assert done["status"] == "completed_with_failures"
    assert (done["counts"]["completed"], done["counts"]["failed"]) == (1, 1)
    follow_up = tenant.wait_for(done["onComplete"]["jobId"], {"completed", "failed"})
    assert follow_up["status"] == "completed"


def test_one_bad_spec_is_a_400_naming_its_index(tenant: Client) -> None:
    response = tenant.post("/jobs/batch", {"jobs": [ok_job("a.png"), {"type": "no-such-type"}]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_TYPE" and body["error"].startswith("jobs[1]: ") and body["details"]["index"] == 1
    assert settled(lambda: tenant.get("/stats").json())["enqueued"] == 0
    unknown = tenant.get("/batches/00000000-0000-4000-8000-000000000000")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "NOT_FOUND")
