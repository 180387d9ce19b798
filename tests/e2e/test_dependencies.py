"""Job dependencies over HTTP against the local stack (``make run``): its stream source runs the handler that
releases and cancels waiting jobs, as Lambda's event source does on AWS."""

from __future__ import annotations

import uuid

import pytest

from jobsctl import JobsClient
from tests.e2e.conftest import Client, LocalStackProcess
from tests.e2e.test_cli import as_json, jobs

pytestmark = pytest.mark.e2e

OK = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}
SLOW = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 1500, "failureRate": 0}}
FAILS = {"type": "simulate", "payload": {"target": "x.png", "durationMs": 0, "shouldFail": True}, "maxAttempts": 1}


def test_a_job_waits_for_a_batch_s_jobs_then_runs(tenant: Client) -> None:
    # Given a batch of three slow jobs
    response = tenant.post("/jobs/batch", {"jobs": [SLOW, SLOW, SLOW]})
    assert response.status_code == 202, response.text
    batch_jobs = response.json()["jobIds"]

    # When a job depends on all three
    job = tenant.enqueue({**OK, "dependsOn": batch_jobs})

    # Then it waits, counting what is left, and shows in the waiting listing and stats
    assert (job["status"], job["dependsOn"], job["waitingOn"]) == ("waiting", batch_jobs, 3)
    listed = tenant.get("/jobs", params={"status": "waiting"}).json()["jobs"]
    assert job["id"] in {each["id"] for each in listed}
    assert "waiting" in tenant.get("/stats").json()

    # and runs once they all completed, after the last of them
    done = tenant.wait_for(job["id"], {"completed", "cancelled", "failed"}, timeout=45)
    assert (done["status"], done["waitingOn"]) == ("completed", 0)
    ends = [tenant.get(f"/jobs/{job_id}").json()["completedAt"] for job_id in batch_jobs]
    assert done["startedAt"] >= max(ends)


def test_a_failure_cancels_the_chain_with_the_dependency_named(tenant: Client) -> None:
    first = tenant.enqueue(FAILS)
    second = tenant.enqueue({**OK, "dependsOn": [first["id"]]})
    third = tenant.enqueue({**OK, "dependsOn": [second["id"]]})

    ended = tenant.wait_for(third["id"], {"cancelled", "completed"}, timeout=30)
    assert (ended["status"], ended["error"]) == ("cancelled", f"dependency {second['id']} cancelled")
    middle = tenant.get(f"/jobs/{second['id']}").json()
    assert (middle["status"], middle["error"]) == ("cancelled", f"dependency {first['id']} failed")


def test_a_waiting_job_is_cancelled_by_hand(tenant: Client) -> None:
    later = tenant.enqueue({**OK, "delaySeconds": 3600})
    waiting = tenant.enqueue({**OK, "dependsOn": [later["id"]]})
    response = tenant.delete(f"/jobs/{waiting['id']}")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert tenant.delete(f"/jobs/{later['id']}").status_code == 200


def test_unknown_ids_are_refused_naming_them(tenant: Client) -> None:
    unknown = str(uuid.uuid4())
    response = tenant.post("/jobs", {**OK, "dependsOn": [unknown]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_OPTION" and unknown in body["error"]
    assert body["details"]["unknownIds"] == [unknown]


def test_the_client_and_cli_enqueue_with_dependencies(stack: LocalStackProcess, tenant: Client) -> None:
    client = JobsClient(stack.url, tenant.key, timeout=10)
    first = client.enqueue("simulate", {"target": "a.png", "durationMs": 500, "failureRate": 0})
    second = client.enqueue("simulate", {"target": "b.png", "failureRate": 0}, depends_on=[first.id])
    assert (second.status, second.depends_on, second.waiting_on) == ("waiting", (first.id,), 1)

    # The CLI as test_cli.py runs it: jobs enqueue --depends-on ID --wait
    payload = '{"target": "c.png", "failureRate": 0}'
    ran = jobs(stack, tenant, "enqueue", "simulate", "-p", payload, "--depends-on", second.id, "--wait", "--json")
    third = as_json(ran)
    assert (third["status"], third["dependsOn"], third["waitingOn"]) == ("completed", [second.id], 0)
    assert client.get(second.id).status == "completed"
