"""Idempotency keys, long-poll reads and progress against moto, through the API and consumer handlers."""

from __future__ import annotations

import threading
import time
from typing import Any

from functions.handlers.api import enqueue_settings
from functions.handlers.runtime import runtime
from functions.logic.clock import system_clock
from functions.logic.enqueue import Accepted, parse_job_spec, submit
from functions.models.job import JobStatus, Progress
from functions.redaction import redact
from tests.integration.harness import TENANT_A, Service, ok_job


def test_the_same_key_and_body_return_200_with_the_first_job(service: Service) -> None:
    # Given a job created with an idempotency key
    body = ok_job(idempotencyKey="invoice-7")
    status, first, _ = service.api("POST", "/jobs", body)
    assert status == 202

    # When the same request is sent again
    status, again, headers = service.api("POST", "/jobs", body)

    # Then the answer is 200 with the first job, marked as a replay, and only one job and message exist
    assert status == 200, again
    assert again["id"] == first["id"] and again["idempotencyKey"] == "invoice-7"
    assert headers["Idempotent-Replayed"] == "true"
    assert service.stats()["enqueued"] == 1
    assert [m["MessageBody"] for m in service.sent].count(
        f'{{"v":1,"tenant":"{TENANT_A}","jobId":"{first["id"]}","type":"{first["type"]}"}}'
    ) == 1


def test_the_same_key_with_another_body_is_409(service: Service) -> None:
    status, first, _ = service.api("POST", "/jobs", ok_job(idempotencyKey="invoice-8"))
    assert status == 202

    status, body, _ = service.api("POST", "/jobs", ok_job(target="other.png", idempotencyKey="invoice-8"))

    assert status == 409
    assert body["code"] == "IDEMPOTENCY_CONFLICT" and body["details"] == {"jobId": first["id"]}


def test_two_racing_requests_with_one_key_make_one_job(service: Service) -> None:
    # Given eight identical keyed requests at the same moment
    rt = runtime()
    body = ok_job(idempotencyKey="race-1")
    results: list[Accepted] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        spec = parse_job_spec(body, system_clock())
        results.append(submit(spec, TENANT_A, rt.repo, rt.queue, system_clock, enqueue_settings(rt.settings)))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one was accepted and the others got that very job
    assert sum(not accepted.replayed for accepted in results) == 1
    assert len({accepted.job.id for accepted in results}) == 1
    assert service.stats()["enqueued"] == 1


def test_wait_returns_once_the_job_is_final(service: Service) -> None:
    # Given a pending job, and a consumer that runs it one second from now
    job = service.create_job(ok_job())
    timer = threading.Timer(1.0, service.drain)
    timer.start()

    # When a client reads it with wait=10
    started = time.monotonic()
    status, body, headers = service.api("GET", f"/jobs/{job['id']}", query={"wait": "10"})
    elapsed = time.monotonic() - started
    timer.join()

    # Then the answer is the completed job, well before the 10 s ran out, and says long-poll is supported
    assert status == 200 and body["status"] == "completed"
    assert elapsed < 8
    assert headers["X-Long-Poll"] == "1"


def test_wait_out_of_range_is_invalid_query(service: Service) -> None:
    job = service.create_job(ok_job())
    status, body, _ = service.api("GET", f"/jobs/{job['id']}", query={"wait": "21"})
    assert status == 400 and body["code"] == "INVALID_QUERY"


def test_progress_is_written_to_the_record_without_changing_its_version(service: Service) -> None:
    # Given a job being processed
    job = service.create_job(ok_job())
    record = service.record(job["id"])
    claimed = record.model_copy(update={"status": JobStatus.PROCESSING})
    service.repo.save(record, claimed)
    stored = service.record(job["id"])

    # When progress is recorded against its current version, then against a stale one
    assert service.repo.record_progress(stored, Progress(percent=40, message="4 of 10", at="2026-01-01T00:00:00Z"))
    assert not service.repo.record_progress(record, Progress(percent=90, message="stale", at="2026-01-01T00:00:01Z"))

    # Then the record shows the first, its version unchanged, and the API shows it
    after = service.record(job["id"])
    assert after.version == stored.version and after.progress is not None and after.progress.percent == 40
    shown: dict[str, Any] = service.job(job["id"])
    assert shown["progress"] == {"percent": 40.0, "message": "4 of 10", "at": "2026-01-01T00:00:00Z"}


def test_a_callers_api_key_is_masked_in_later_log_lines(service: Service) -> None:
    # Given a request made with tenant A's key
    key_value = service.key_values[service.key_a]
    assert service.api("GET", "/stats")[0] == 200

    # Then that key is masked wherever it would appear in a log line
    assert redact({"note": f"called with {key_value}"}) == {"note": "called with ***"}


def test_ids_naming_other_items_of_the_table_are_not_found(service: Service) -> None:
    # Given a batch and an idempotency key, stored in the jobs table beside the jobs
    status, batch, _ = service.api("POST", "/jobs/batch", {"jobs": [ok_job()]})
    assert status == 202, batch
    assert service.api("POST", "/jobs", ok_job(idempotencyKey="k-1"))[0] == 202

    # When their keys are asked for as job ids (as a gateway that decodes %23 would pass them)
    for job_id in (f"batch#{batch['id']}", "idem#whatever", "x#y"):
        status, body, _ = service.api("GET", f"/jobs/{job_id}")
        # Then the answer is 404, never a 500
        assert status == 404 and body["code"] == "NOT_FOUND", (job_id, body)
