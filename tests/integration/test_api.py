"""The API handler, route by route, on the happy path: API Gateway proxy events in, contract-shaped answers out."""

from __future__ import annotations

import uuid
from datetime import datetime

from tests.integration.harness import (
    RECORD_FIELDS,
    STATS_FIELDS,
    TENANT_A,
    Service,
    failing_job,
    ok_job,
    statuses,
)


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no offset"
    return parsed


# --- POST /jobs ---


def test_post_jobs_accepts_a_job_with_202_a_location_and_the_full_record(service: Service) -> None:
    # Given a simulate job with every option
    body = {
        "type": "simulate",
        "payload": {"action": "fetch", "target": "https://example.com", "durationMs": 0, "failureRate": 0},
        "priority": 9,
        "maxAttempts": 7,
    }

    # When it is posted
    status, job, headers = service.api("POST", "/jobs", body)

    # Then it is accepted, located, and described by exactly the contract's record
    assert status == 202
    assert headers["Location"] == f"/jobs/{job['id']}"
    assert headers["Content-Type"] == "application/json"
    assert set(job) == RECORD_FIELDS
    assert str(uuid.UUID(job["id"])) == job["id"]
    assert job["type"] == "simulate"
    assert job["payload"] == {
        "action": "fetch",
        "target": "https://example.com",
        "durationMs": 0,
        "failureRate": 0,
        "shouldFail": False,
        "steps": 0,
    }
    assert (job["status"], job["priority"], job["attempts"], job["maxAttempts"]) == ("pending", 9, 0, 7)
    assert job["createdAt"] == job["updatedAt"]
    parse_iso(job["createdAt"])
    assert (job["runAt"], job["startedAt"], job["completedAt"], job["result"], job["error"]) == (None,) * 5
    assert job["history"] == [{"status": "pending", "at": job["createdAt"]}]
    # and its message is on the queue, pointing at the record
    assert service.queue_counts()["visible"] == 1


def test_post_jobs_fills_in_the_defaults(service: Service) -> None:
    # Given the smallest valid body
    status, job, _ = service.api("POST", "/jobs", {"type": "simulate", "payload": {"target": "a.png"}})

    # Then priority 5, maxAttempts 3 and the payload model's defaults are applied
    assert status == 202
    assert (job["priority"], job["maxAttempts"]) == (5, 3)
    assert job["payload"] == {
        "action": "resize",
        "target": "a.png",
        "durationMs": 50,
        "failureRate": 0.35,
        "shouldFail": False,
        "steps": 0,
    }


def test_post_jobs_accepts_a_message_job_without_options(service: Service) -> None:
    status, job, _ = service.api("POST", "/jobs", {"type": "message", "payload": {"message": "  hi  "}})

    assert status == 202
    assert job["payload"] == {"message": "hi"}


def test_post_jobs_accepts_the_boundaries_of_every_option(service: Service) -> None:
    # Given the lowest and highest allowed values
    for options in ({"priority": 1, "maxAttempts": 1}, {"priority": 10, "maxAttempts": 25, "delaySeconds": 0}):
        # Then the job is accepted with them
        job = service.create_job(ok_job(**options))
        assert job["priority"] == options["priority"]
        assert job["maxAttempts"] == options["maxAttempts"]
        assert job["status"] == "pending"

    far = service.create_job(ok_job(delaySeconds=31_536_000))
    assert far["status"] == "scheduled"


# --- GET /jobs/{id} ---


def test_get_job_returns_the_record_as_it_is_now(service: Service) -> None:
    # Given an accepted job
    created = service.create_job(ok_job())

    # Then reading it returns the same record
    status, job, _ = service.api("GET", f"/jobs/{created['id']}")
    assert status == 200
    assert job == created

    # And after it ran, the record shows the run
    service.drain()
    status, job, _ = service.api("GET", f"/jobs/{created['id']}")
    assert status == 200
    assert job["status"] == "completed"
    assert job["result"] == "Resized photo.jpg to 800x600 (simulated)"
    assert statuses(job) == [("pending", None), ("processing", 1), ("completed", 1)]


# --- GET /jobs ---


def test_list_jobs_filters_by_status_and_type_newest_first(service: Service) -> None:
    # Given a simulate job, a message job, and a cancelled simulate job, created in that order
    first = service.create_job(ok_job("first.jpg"))
    second = service.create_job({"type": "message", "payload": {"message": "second"}})
    third = service.create_job(ok_job("third.jpg"))
    assert service.api("DELETE", f"/jobs/{third['id']}").status == 200

    def listed(query: dict[str, str] | None = None) -> list[str]:
        status, body, _ = service.api("GET", "/jobs", query=query)
        assert status == 200, body
        assert set(body) == {"jobs", "count", "nextCursor"}
        assert body["count"] == len(body["jobs"])
        for job in body["jobs"]:
            assert set(job) == RECORD_FIELDS
        return [job["id"] for job in body["jobs"]]

    # Then each listing holds what matches, newest first
    assert listed() == [third["id"], second["id"], first["id"]]
    assert listed({"status": "pending"}) == [second["id"], first["id"]]
    assert listed({"status": "cancelled"}) == [third["id"]]
    assert listed({"type": "message"}) == [second["id"]]
    assert listed({"type": "simulate"}) == [third["id"], first["id"]]
    assert listed({"status": "pending", "type": "simulate"}) == [first["id"]]
    assert listed({"status": "completed"}) == []


def test_list_jobs_pages_with_next_cursor(service: Service) -> None:
    # Given five jobs
    ids = [service.create_job(ok_job(f"{i}.jpg"))["id"] for i in range(5)]

    # When listed two at a time, following nextCursor
    seen: list[str] = []
    query = {"limit": "2"}
    while True:
        status, body, _ = service.api("GET", "/jobs", query=query)
        assert status == 200
        assert len(body["jobs"]) <= 2
        seen += [job["id"] for job in body["jobs"]]
        if body["nextCursor"] is None:
            break
        query = {"limit": "2", "cursor": body["nextCursor"]}

    # Then every job comes once, newest first
    assert seen == list(reversed(ids))


def test_list_jobs_defaults_to_fifty(service: Service) -> None:
    # Given no jobs, an empty page with no cursor
    status, body, _ = service.api("GET", "/jobs")
    assert (status, body) == (200, {"jobs": [], "count": 0, "nextCursor": None})


# --- DELETE /jobs/{id} ---


def test_delete_cancels_a_pending_job(service: Service) -> None:
    # Given a pending job
    created = service.create_job(ok_job())

    # When it is cancelled
    status, job, _ = service.api("DELETE", f"/jobs/{created['id']}")

    # Then the answer is the cancelled record
    assert status == 200
    assert set(job) == RECORD_FIELDS
    assert job["status"] == "cancelled"
    assert job["completedAt"] is not None
    assert statuses(job) == [("pending", None), ("cancelled", None)]
    assert service.job(created["id"]) == job


def test_delete_cancels_a_scheduled_job(service: Service) -> None:
    created = service.create_job(ok_job(delaySeconds=3600))

    status, job, _ = service.api("DELETE", f"/jobs/{created['id']}")

    assert status == 200
    assert statuses(job) == [("scheduled", None), ("cancelled", None)]


# --- POST /jobs/{id}/retry ---


def test_retry_of_a_failed_job_resets_it_and_runs_it_again(service: Service) -> None:
    # Given a job that failed (one attempt allowed) and now would succeed
    created = service.create_job(failing_job(max_attempts=1))
    service.drain()
    assert service.job(created["id"])["status"] == "failed"
    service.dead_letters(1)

    # When it is retried
    status, job, headers = service.api("POST", f"/jobs/{created['id']}/retry")

    # Then it is pending again with attempts reset, its history kept, and it is queued
    assert status == 202
    assert headers["Location"] == f"/jobs/{created['id']}"
    assert (job["status"], job["attempts"], job["error"], job["completedAt"]) == ("pending", 0, None, None)
    assert statuses(job) == [("pending", None), ("processing", 1), ("failed", 1), ("pending", None)]
    assert service.queue_counts()["visible"] == 1

    # And it runs again (still failing: shouldFail), counting attempts from 1
    service.drain()
    after = service.job(created["id"])
    assert after["status"] == "failed"
    assert after["attempts"] == 1
    assert statuses(after)[-2:] == [("processing", 1), ("failed", 1)]


def test_retry_of_a_cancelled_job_runs_it_to_completion(service: Service) -> None:
    # Given a cancelled job whose message was already consumed and dropped
    created = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{created['id']}")
    service.drain()

    # When it is retried
    status, job, _ = service.api("POST", f"/jobs/{created['id']}/retry")
    assert status == 202
    assert job["status"] == "pending"

    # Then it completes
    service.drain()
    done = service.job(created["id"])
    assert done["status"] == "completed"
    assert statuses(done) == [
        ("pending", None),
        ("cancelled", None),
        ("pending", None),
        ("processing", 1),
        ("completed", 1),
    ]


# --- GET /stats ---


def test_stats_counts_every_status_exactly(service: Service) -> None:
    # Given one job in each of five statuses
    completed = service.create_job(ok_job("done.jpg"))
    failed = service.create_job(failing_job(max_attempts=1))
    service.drain()
    cancelled = service.create_job(ok_job("cancel.jpg"))
    service.api("DELETE", f"/jobs/{cancelled['id']}")
    service.create_job(ok_job("waiting.jpg"))
    service.create_job(ok_job("later.jpg", delaySeconds=3600))
    assert service.job(completed["id"])["status"] == "completed"
    assert service.job(failed["id"])["status"] == "failed"

    # When the stats are read
    status, stats, _ = service.api("GET", "/stats")

    # Then the numbers are exact
    assert status == 200
    assert set(stats) == STATS_FIELDS
    assert stats == {
        "enqueued": 5,
        "processed": 2,
        "total": 5,
        "scheduled": 1,
        "pending": 1,
        "processing": 0,
        "retrying": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "waiting": 0,
        "completionRate": 0.2,
        "failureRate": 0.2,
    }


def test_stats_of_a_tenant_without_jobs_are_zero_with_zero_rates(service: Service) -> None:
    stats = service.stats()
    assert stats["total"] == 0
    assert stats["completionRate"] == 0
    assert stats["failureRate"] == 0
    assert all(isinstance(stats[name], int) for name in STATS_FIELDS - {"completionRate", "failureRate"})


# --- GET /health ---


def test_health_answers_without_a_key(service: Service) -> None:
    status, body, _ = service.api("GET", "/health", key=None)

    assert status == 200
    assert set(body) == {"status", "service", "timestamp"}
    assert (body["status"], body["service"]) == ("ok", "jobs")
    parse_iso(body["timestamp"].replace("Z", "+00:00"))


# --- POST /enqueue ---


def test_enqueue_accepts_a_trimmed_message_and_completes_it(service: Service) -> None:
    # When a message is enqueued
    status, body, _ = service.api("POST", "/enqueue", {"message": "  hello world  "})

    # Then the answer has the seed's shape
    assert status == 202
    assert set(body) == {"queued", "id", "message", "enqueuedAt"}
    assert body["queued"] is True
    assert body["message"] == "hello world"
    parse_iso(body["enqueuedAt"].replace("Z", "+00:00"))
    assert str(uuid.UUID(body["id"])) == body["id"]

    # And it is a message job that completes with the message as its result
    service.drain()
    job = service.job(body["id"])
    assert (job["type"], job["status"], job["result"]) == ("message", "completed", "hello world")
    assert job["createdAt"] == body["enqueuedAt"]


def test_enqueue_accepts_500_characters_after_trimming(service: Service) -> None:
    status, body, _ = service.api("POST", "/enqueue", {"message": "  " + "x" * 500 + "\n"})

    assert status == 202
    assert len(body["message"]) == 500


def test_jobs_of_a_tenant_are_stored_under_that_tenant(service: Service) -> None:
    # Given a job posted with tenant A's key
    job = service.create_job(ok_job())

    # Then the record belongs to tenant A
    assert service.record(job["id"], TENANT_A).id == job["id"]
