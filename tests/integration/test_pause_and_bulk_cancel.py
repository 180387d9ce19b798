"""Pausing a job type and cancelling matching jobs, on moto through the API and consumer handlers."""

from __future__ import annotations

import time

from functions.logic.clock import parse_iso_ms
from tests.integration.harness import TENANT_B, Service, failing_job, ok_job


def _types(service: Service, key: object = None) -> dict[str, bool]:
    status, body, _ = service.api("GET", "/types", key=key) if key else service.api("GET", "/types")
    assert status == 200, body
    return {info["name"]: info["paused"] for info in body["types"]}


def test_a_paused_type_waits_without_using_attempts_and_runs_once_resumed(service: Service) -> None:
    # Given simulate is paused for tenant A only
    status, body, _ = service.api("POST", "/types/simulate/pause")
    assert (status, body) == (200, {"type": "simulate", "paused": True})
    assert _types(service)["simulate"] is True
    assert _types(service, service.key_b)["simulate"] is False
    paused = service.create_job(ok_job(maxAttempts=1))
    other_tenant = service.create_job(ok_job(), key=service.key_b)
    created_mark = service.record(paused["id"]).sweep_at

    # When the consumer receives their messages
    deadline = time.monotonic() + 10
    while service.record(other_tenant["id"], TENANT_B).status.value != "completed" and time.monotonic() < deadline:
        messages = service.receive()
        if messages:
            service.deliver(messages)

    # Then tenant B's job ran, tenant A's waits: pending, no attempt used, its sweep mark kept ahead of the sweeper
    assert service.job(other_tenant["id"], key=service.key_b)["status"] == "completed"
    waiting = service.record(paused["id"])
    assert (waiting.status.value, waiting.attempts) == ("pending", 0)
    assert created_mark is not None and waiting.sweep_at is not None
    assert parse_iso_ms(waiting.sweep_at) > parse_iso_ms(created_mark)
    # and its message is still there, waiting to be looked at again
    assert sum(service.queue_counts().values()) >= 1

    # When the type is resumed
    status, body, _ = service.api("POST", "/types/simulate/resume")
    assert (status, body) == (200, {"type": "simulate", "paused": False})
    assert _types(service)["simulate"] is False
    service.drain(timeout=15)

    # Then the job ran on its one attempt
    done = service.job(paused["id"])
    assert (done["status"], done["attempts"]) == ("completed", 1)


def test_pausing_an_unknown_type_is_invalid_type_and_pausing_twice_is_harmless(service: Service) -> None:
    status, body, _ = service.api("POST", "/types/no-such-type/pause")
    assert status == 400 and body["code"] == "INVALID_TYPE"
    for _ in range(2):
        assert service.api("POST", "/types/fetch/pause").status == 200
    assert _types(service)["fetch"] is True
    assert service.api("POST", "/types/fetch/resume").status == 200
    assert service.api("POST", "/types/fetch/resume").status == 200
    assert _types(service)["fetch"] is False


def test_bulk_cancel_cancels_the_cancellable_matching_jobs_of_the_tenant_only(service: Service) -> None:
    # Given tenant A has a completed job, a failed one, pending and scheduled ones; tenant B a pending one
    done = service.create_job(ok_job())
    failed = service.create_job(failing_job(max_attempts=1))
    service.drain()
    pending = [service.create_job(ok_job()) for _ in range(3)]
    scheduled = service.create_job(ok_job(delaySeconds=3600))
    theirs = service.create_job(ok_job(), key=service.key_b)

    # When A cancels its scheduled jobs only
    status, body, _ = service.api("POST", "/jobs/cancel", {"status": "scheduled"})
    # Then only that one is cancelled
    assert (status, body) == (200, {"cancelled": 1})
    assert service.job(scheduled["id"])["status"] == "cancelled"
    assert service.job(pending[0]["id"])["status"] == "pending"

    # When A cancels everything cancellable of type simulate
    status, body, _ = service.api("POST", "/jobs/cancel", {"type": "simulate"})
    # Then its pending jobs are cancelled; final jobs and tenant B's job are left alone
    assert (status, body) == (200, {"cancelled": 3})
    assert {service.job(job["id"])["status"] for job in pending} == {"cancelled"}
    assert service.job(done["id"])["status"] == "completed"
    assert service.job(failed["id"])["status"] == "failed"
    assert service.job(theirs["id"], key=service.key_b)["status"] == "pending"
    # And again: nothing left to cancel; an empty body means every cancellable job
    assert service.api("POST", "/jobs/cancel", raw="").body == {"cancelled": 0}
    # And their queued messages are dropped by the consumer: nothing runs
    service.drain()
    assert {service.job(job["id"])["status"] for job in pending} == {"cancelled"}


def test_bulk_cancel_refuses_bad_filters(service: Service) -> None:
    cases = [
        ({"status": "completed"}, "INVALID_OPTION"),
        ({"status": 3}, "INVALID_OPTION"),
        ({"colour": "red"}, "INVALID_OPTION"),
        ({"type": "nope"}, "INVALID_TYPE"),
    ]
    for body, code in cases:
        status, answer, _ = service.api("POST", "/jobs/cancel", body)
        assert (status, answer["code"]) == (400, code), body
    status, answer, _ = service.api("POST", "/jobs/cancel", raw="[]")
    assert (status, answer["code"]) == (400, "INVALID_BODY")
