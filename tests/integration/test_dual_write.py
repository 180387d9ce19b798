"""No dual-write gap: a job accepted with 202 whose message never reached SQS is sent by the sweeper and runs."""

from __future__ import annotations

from typing import Any

import pytest

from functions.dal.job_queue import SqsJobQueue
from functions.handlers import runtime, sweeper
from functions.logic.clock import parse_iso_ms, system_clock
from functions.models.errors import StorageError
from functions.models.job import JobMessage, JobStatus
from local.lambda_context import LocalContext
from tests.integration.harness import Service, ok_job, statuses


def refuse_to_send(self: SqsJobQueue, message: JobMessage, delay_seconds: int = 0, **lane: object) -> None:
    raise StorageError("SQS SendMessage failed: could not connect")


def test_a_job_whose_message_was_not_sent_is_accepted_and_later_sent_by_the_sweeper(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SQS refusing every SendMessage
    monkeypatch.setattr(SqsJobQueue, "send", refuse_to_send)

    # When a job is posted
    status, job, headers = service.api("POST", "/jobs", ok_job())

    # Then it is still accepted: recorded pending, with a sweep mark, and nothing queued
    assert status == 202
    assert headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "pending"
    record = service.record(job["id"])
    assert record.status == JobStatus.PENDING
    assert record.sweep_at is not None
    grace_ms = service.settings.pending_grace_seconds * 1000
    assert parse_iso_ms(record.sweep_at) == parse_iso_ms(job["createdAt"]) + grace_ms
    assert service.queue_is_empty()

    # And SQS recovers; within the grace period the sweeper leaves the job alone (its message may be on the way)
    monkeypatch.undo()
    assert service.sweep().resent == 0
    assert service.queue_is_empty()

    # When the sweeper runs after the grace period
    report = service.sweep(lambda: system_clock() + grace_ms + 1000)

    # Then it sends the message, and the job runs to completion
    assert report.resent == 1
    assert service.queue_counts()["visible"] == 1
    service.drain()
    done = service.job(job["id"])
    assert done["status"] == "completed"
    assert statuses(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert service.record(job["id"]).sweep_at is None
    assert service.stats()["completed"] == 1


def test_the_sweeper_handler_sends_a_stranded_job_once_the_grace_has_passed(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given functions configured with no grace period, and a job accepted while SQS was down
    monkeypatch.setenv("JOBS_PENDING_GRACE_SECONDS", "0")
    runtime.reset()
    with monkeypatch.context() as outage:
        outage.setattr(SqsJobQueue, "send", refuse_to_send)
        job = service.create_job(ok_job())
    assert service.queue_is_empty()

    # When the scheduled sweeper Lambda runs
    report = sweeper.handler({}, LocalContext("sweeper", 60))

    # Then it re-sent exactly that job, which now completes
    assert report == {
        "released": 0,
        "resent": 1,
        "skipped": 0,
        "callbacks_resent": 0,
        "orphans_resent": 0,
        "orphans_failed": 0,
    }
    service.drain()
    assert service.job(job["id"])["status"] == "completed"


def test_a_job_is_not_stranded_when_the_process_dies_between_the_write_and_the_send(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an API process that dies right after writing the record
    def die(*_: Any, **__: Any) -> None:
        raise RuntimeError("the Lambda was killed")

    monkeypatch.setattr("functions.logic.enqueue.send_or_leave_to_sweeper", die)
    status, body, _ = service.api("POST", "/jobs", ok_job())
    assert (status, body["code"]) == (500, "INTERNAL")  # the client was not told 202; but the record exists
    monkeypatch.undo()
    (record,) = service.repo.list_page("tenant-a", None, None, 10, None).jobs
    assert record.status == JobStatus.PENDING
    assert service.queue_is_empty()

    # When the sweeper runs after the grace period
    grace_ms = service.settings.pending_grace_seconds * 1000
    assert service.sweep(lambda: system_clock() + grace_ms + 1000).resent == 1

    # Then the job completes
    service.drain()
    assert service.job(record.id)["status"] == "completed"


def test_a_retry_accepted_while_sqs_was_down_is_sent_by_the_sweeper(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cancelled job retried while SQS refused to send
    job = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{job['id']}")
    service.drain()
    with monkeypatch.context() as outage:
        outage.setattr(SqsJobQueue, "send", refuse_to_send)
        status, retried, _ = service.api("POST", f"/jobs/{job['id']}/retry")
    assert (status, retried["status"]) == (202, "pending")
    assert service.queue_is_empty()

    # When the sweeper runs after the grace period
    grace_ms = service.settings.pending_grace_seconds * 1000
    assert service.sweep(lambda: system_clock() + grace_ms + 1000).resent == 1

    # Then the retry runs
    service.drain()
    assert service.job(job["id"])["status"] == "completed"


def test_a_sweeper_resend_of_a_job_still_queued_runs_it_only_once(service: Service) -> None:
    # Given a pending job whose message is queued but not yet consumed after the grace period
    job = service.create_job(ok_job())
    grace_ms = service.settings.pending_grace_seconds * 1000

    # When the sweeper re-sends it (a duplicate)
    assert service.sweep(lambda: system_clock() + grace_ms + 1000).resent == 1
    assert service.queue_counts()["visible"] == 2
    service.drain()

    # Then the job ran once, and the sweeper has nothing more to do
    done = service.job(job["id"])
    assert statuses(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert service.sweep(lambda: system_clock() + 10 * grace_ms).resent == 0
    assert service.queue_is_empty()


def test_the_sweeper_ignores_finished_jobs(service: Service) -> None:
    # Given a completed job and a cancelled one
    done = service.create_job(ok_job())
    service.drain()
    cancelled = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{cancelled['id']}")
    service.drain()

    # When the sweeper runs far in the future
    report = service.sweep(lambda: system_clock() + 10**9)

    # Then it sends nothing
    assert (report.resent, report.released) == (0, 0)
    assert service.queue_is_empty()
    assert service.job(done["id"])["status"] == "completed"
