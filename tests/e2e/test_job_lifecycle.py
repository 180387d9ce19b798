"""The contract over HTTP against the local stack: the lifecycle, retries, the DLQ, scheduling, cancel and retry."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import requests

from jobsctl.ops import peek
from tests.e2e.conftest import FIRST_KEY, SECOND_KEY, Client, LocalStackProcess, settled, tenant_of
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

FINAL = {"completed", "failed", "cancelled"}


def statuses(job: dict) -> list[tuple[str, int | None]]:
    return [(entry["status"], entry.get("attempt")) for entry in job["history"]]


def test_health_needs_no_key(stack: LocalStackProcess) -> None:
    # When
    response = requests.get(stack.url + "/health", timeout=5)
    # Then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["service"] == "jobs" and body["timestamp"].endswith("Z")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "not-a-key-of-anyone"}])
def test_every_other_route_needs_a_known_key(stack: LocalStackProcess, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/stats"),
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/x"),
        ("DELETE", "/jobs/x"),
    ]:
        # When
        response = requests.request(method, stack.url + path, headers=headers, json={}, timeout=5)
        # Then
        assert response.status_code == 403, (method, path)
        assert response.json() == {"error": "Forbidden", "code": "FORBIDDEN"}


def test_a_job_runs_to_completion_and_its_record_tells_the_story(tenant: Client) -> None:
    # Given
    response = tenant.post("/jobs", {"type": "simulate", "payload": {"target": "cat.png", "failureRate": 0}})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "pending" and job["attempts"] == 0 and job["priority"] == 5 and job["maxAttempts"] == 3
    # When
    done = tenant.wait_for(job["id"], FINAL)
    # Then
    assert done["status"] == "completed"
    assert done["result"] == "Resized cat.png to 800x600 (simulated)"
    assert statuses(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert done["startedAt"] and done["completedAt"] and done["error"] is None


def test_a_failing_job_retries_to_exhaustion_and_its_message_ends_in_the_dlq(
    stack: LocalStackProcess, tenant: Client
) -> None:
    # Given
    job = tenant.enqueue({"type": "simulate", "payload": {"target": "x", "shouldFail": True}, "maxAttempts": 3})
    # When
    done = tenant.wait_for(job["id"], FINAL, timeout=40)
    # Then
    assert done["status"] == "failed" and done["attempts"] == 3
    assert "shouldFail" in done["error"]
    assert statuses(done) == [
        ("pending", None),
        ("processing", 1),
        ("retrying", 1),
        ("processing", 2),
        ("retrying", 2),
        ("processing", 3),
        ("failed", 3),
    ]
    sqs = stack.aws("sqs")
    dlq = sqs.get_queue_url(QueueName="jobs-dlq")["QueueUrl"]
    # (the whole queue, as `jobs dlq list` reads it: other tests of this stack dead-letter messages too)
    wait_until(
        lambda: any(letter.job_id == job["id"] for letter in peek(sqs, dlq, limit=1000)),
        10,
        "the job's message is in the DLQ",
        interval=0.5,
    )


def test_tenants_see_only_their_own_jobs(stack: LocalStackProcess) -> None:
    # Given
    first, second = Client(stack.url, FIRST_KEY), Client(stack.url, SECOND_KEY)
    job = first.enqueue({"type": "message", "payload": {"message": "mine"}})
    # When / Then
    assert second.get(f"/jobs/{job['id']}").status_code == 404
    assert second.get(f"/jobs/{job['id']}").json()["code"] == "NOT_FOUND"
    assert second.delete(f"/jobs/{job['id']}").status_code == 404
    assert second.post(f"/jobs/{job['id']}/retry").status_code == 404
    assert all(j["id"] != job["id"] for j in second.get("/jobs?limit=100").json()["jobs"])
    assert first.get(f"/jobs/{job['id']}").status_code == 200


def test_a_scheduled_job_can_be_cancelled_and_never_runs(tenant: Client) -> None:
    # Given
    job = tenant.enqueue({"type": "simulate", "payload": {"target": "later", "failureRate": 0}, "delaySeconds": 2})
    assert job["status"] == "scheduled" and job["runAt"]
    # When
    cancelled = tenant.delete(f"/jobs/{job['id']}")
    # Then
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = tenant.delete(f"/jobs/{job['id']}")
    assert again.status_code == 409 and again.json()["code"] == "INVALID_STATE"
    # the message SQS is holding arrives after runAt and must be dropped
    time.sleep(3.5)
    final = tenant.get(f"/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert [s for s, _ in statuses(final)] == ["scheduled", "cancelled"]


def test_a_scheduled_job_runs_after_its_delay(tenant: Client) -> None:
    # Given
    job = tenant.enqueue({"type": "simulate", "payload": {"target": "soon", "failureRate": 0}, "delaySeconds": 2})
    # When
    done = tenant.wait_for(job["id"], FINAL, timeout=20)
    # Then
    assert done["status"] == "completed"
    assert [s for s, _ in statuses(done)] == ["scheduled", "pending", "processing", "completed"]
    # SQS delays are whole seconds; the consumer runs a message up to 1 s early rather than defer it again.
    started, run_at = datetime.fromisoformat(done["startedAt"]), datetime.fromisoformat(done["runAt"])
    assert started >= run_at - timedelta(seconds=1)


def test_a_failed_job_can_be_retried_and_keeps_its_history(tenant: Client) -> None:
    # Given
    job = tenant.enqueue({"type": "simulate", "payload": {"target": "x", "shouldFail": True}, "maxAttempts": 1})
    failed = tenant.wait_for(job["id"], FINAL)
    assert failed["status"] == "failed"
    # When
    response = tenant.post(f"/jobs/{job['id']}/retry")
    # Then
    assert response.status_code == 202
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    again = tenant.wait_for(job["id"], {"failed"}, timeout=20)
    assert [s for s, _ in statuses(again)] == ["pending", "processing", "failed", "pending", "processing", "failed"]
    conflict = tenant.post(f"/jobs/{job['id']}/retry")
    assert conflict.status_code == 202  # failed again, so retryable again
    tenant.wait_for(job["id"], {"failed"}, timeout=20)


def test_stats_count_exactly_by_status(tenant: Client) -> None:
    # Given
    ok = [tenant.enqueue({"type": "simulate", "payload": {"target": f"{i}", "failureRate": 0}}) for i in range(3)]
    bad = tenant.enqueue({"type": "simulate", "payload": {"target": "x", "shouldFail": True}, "maxAttempts": 1})
    later = tenant.enqueue({"type": "message", "payload": {"message": "hi"}, "delaySeconds": 600})
    tenant.delete(f"/jobs/{later['id']}")
    for job in [*ok, bad]:
        tenant.wait_for(job["id"], FINAL)
    # When
    stats = settled(lambda: tenant.get("/stats").json())
    # Then
    assert stats["enqueued"] == 5 and stats["total"] == 5
    assert (stats["completed"], stats["failed"], stats["cancelled"]) == (3, 1, 1)
    assert stats["processed"] == 4
    assert stats["pending"] == stats["processing"] == stats["retrying"] == stats["scheduled"] == 0
    assert stats["completionRate"] == pytest.approx(3 / 5) and stats["failureRate"] == pytest.approx(1 / 5)


def test_listing_pages_newest_first_with_filters(tenant: Client) -> None:
    # Given
    ids = [tenant.enqueue({"type": "message", "payload": {"message": f"m{i}"}})["id"] for i in range(3)]
    scheduled = tenant.enqueue({"type": "simulate", "payload": {"target": "t"}, "delaySeconds": 600})
    # When
    first = tenant.get("/jobs", params={"limit": 2}).json()
    second = tenant.get("/jobs", params={"limit": 2, "cursor": first["nextCursor"]}).json()
    # Then
    listed = [job["id"] for job in first["jobs"] + second["jobs"]]
    assert listed == [scheduled["id"], *reversed(ids)]
    assert first["count"] == 2 and second["nextCursor"] is None
    by_status = tenant.get("/jobs", params={"status": "scheduled"}).json()
    assert [job["id"] for job in by_status["jobs"]] == [scheduled["id"]]
    by_type = tenant.get("/jobs", params={"type": "message"}).json()
    assert {job["id"] for job in by_type["jobs"]} == set(ids)
    tenant.delete(f"/jobs/{scheduled['id']}")


def test_enqueue_message_route_of_the_task_queue_seed(tenant: Client) -> None:
    # When
    response = tenant.post("/enqueue", {"message": "  hello world  "})
    # Then
    assert response.status_code == 202
    body = response.json()
    assert body["queued"] is True and body["message"] == "hello world" and body["enqueuedAt"]
    done = tenant.wait_for(body["id"], FINAL)
    assert done["type"] == "message" and done["status"] == "completed" and done["result"] == "hello world"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/jobs", "not json", 400, "INVALID_BODY"),
        ("POST", "/jobs", "null", 400, "INVALID_BODY"),
        ("POST", "/jobs", "[1]", 400, "INVALID_BODY"),
        ("POST", "/jobs", "", 400, "INVALID_BODY"),
        ("POST", "/jobs", '{"type": "nope"}', 400, "INVALID_TYPE"),
        ("POST", "/jobs", '{"type": "simulate", "payload": {}}', 400, "INVALID_PAYLOAD"),
        ("POST", "/jobs", '{"type": "message", "payload": {"message": "x"}, "priority": 11}', 400, "INVALID_OPTION"),
        (
            "POST",
            "/jobs",
            '{"type": "message", "payload": {"message": "x"}, "runAt": "tomorrow"}',
            400,
            "INVALID_OPTION",
        ),
        ("POST", "/enqueue", '{"message": "   "}', 400, "INVALID_MESSAGE"),
        ("POST", "/enqueue", '"hi"', 400, "INVALID_BODY"),
        ("GET", "/jobs?status=bogus", None, 400, "INVALID_QUERY"),
        ("GET", "/jobs?limit=0", None, 400, "INVALID_QUERY"),
        ("GET", "/jobs?cursor=garbage", None, 400, "INVALID_QUERY"),
        ("GET", "/jobs/00000000-0000-0000-0000-000000000000", None, 404, "NOT_FOUND"),
        ("DELETE", "/jobs/00000000-0000-0000-0000-000000000000", None, 404, "NOT_FOUND"),
        ("POST", "/jobs/00000000-0000-0000-0000-000000000000/retry", None, 404, "NOT_FOUND"),
        ("GET", "/nowhere", None, 404, "NOT_FOUND"),
    ],
)
def test_bad_input_gets_a_clear_error_never_a_500(
    tenant: Client, method: str, path: str, body: str | None, status: int, code: str
) -> None:
    # When
    response = tenant.request(method, path, data=body, headers={"content-type": "application/json"})
    # Then
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code and isinstance(payload["error"], str) and "Traceback" not in response.text


def test_a_body_over_5_mib_is_refused_with_413(tenant: Client) -> None:
    # Given a body one byte over 5 MiB
    skeleton = json.dumps({"type": "message", "payload": {"message": ""}})
    body = skeleton.replace('""', '"' + "x" * (5 * 1024 * 1024 + 1 - len(skeleton)) + '"')
    assert len(body) == 5 * 1024 * 1024 + 1
    # When
    response = tenant.request("POST", "/jobs", data=body)
    # Then
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_a_300_kib_payload_is_accepted_and_its_handler_sees_all_of_it(stack: LocalStackProcess, tenant: Client) -> None:
    from functions.logic.job_types import registered_types

    if "batch-import" not in registered_types():
        pytest.skip("needs the batch-import job type")
    # Given a batch-import of 1,000 items of ~300 bytes each: a payload over the 256 KiB kept inline
    items = [{"id": f"item-{n:04d}", "text": f"{n:04d}" * 70} for n in range(1000)]
    payload = {"namespace": "big", "items": items}
    assert len(json.dumps(payload)) > 300 * 1024
    # When
    job = tenant.enqueue({"type": "batch-import", "payload": payload})
    done = tenant.wait_for(job["id"], FINAL)
    # Then it completed having written every item, the last one whole
    assert done["status"] == "completed", done
    assert done["result"]["written"] == 1000
    assert done["payload"] == payload  # GET /jobs/{id} returns the whole payload
    tenant_name = tenant_of(stack, tenant.key)
    last = stack.aws("dynamodb").get_item(
        TableName="job-imports", Key={"pk": {"S": f"{tenant_name}#big"}, "sk": {"S": "item-0999"}}
    )["Item"]
    assert json.loads(last["item"]["S"]) == items[-1]
    # And a listing shows a placeholder for it, not 300 KiB
    listed = tenant.get("/jobs?type=batch-import").json()["jobs"]
    assert listed[0]["payload"] == {"$offloaded": True, "bytes": len(json.dumps(payload, separators=(",", ":")))}
