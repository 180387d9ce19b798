"""Scheduling: short delays ride on SQS DelaySeconds, long ones wait for the sweeper, the past means now."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.dal.job_queue import SqsJobQueue
from functions.handlers import consumer
from functions.logic.clock import iso, parse_iso_ms, system_clock
from functions.models.errors import StorageError
from tests.integration.harness import Service, ok_job, statuses


def sends_of(service: Service, job_id: str) -> list[int]:
    """The DelaySeconds of every SendMessage the functions made for this job."""
    return [int(params.get("DelaySeconds", 0)) for params in service.sent if job_id in params["MessageBody"]]


def assert_run_at(job: dict[str, object], delay_seconds: int) -> None:
    # The API reads the clock once to parse the options and once to stamp createdAt: a few ms apart.
    drift = parse_iso_ms(str(job["createdAt"])) + delay_seconds * 1000 - parse_iso_ms(str(job["runAt"]))
    assert 0 <= drift < 500, drift


def test_a_short_delay_is_scheduled_then_runs_on_time_through_sqs(service: Service) -> None:
    # When a job is posted with a 2 s delay
    job = service.create_job(ok_job(delaySeconds=2))

    # Then it is scheduled for createdAt + 2 s, and its message is held back by SQS for those 2 s
    assert job["status"] == "scheduled"
    assert_run_at(job, 2)
    assert statuses(job) == [("scheduled", None)]
    assert sends_of(service, job["id"]) == [2]
    assert service.queue_counts() == {"visible": 0, "notvisible": 0, "delayed": 1}
    assert service.receive() == []
    assert service.job(job["id"])["status"] == "scheduled"

    # When the queue is drained
    service.drain()

    # Then it ran, not before runAt
    done = service.job(job["id"])
    assert done["status"] == "completed"
    assert statuses(done) == [("scheduled", None), ("pending", None), ("processing", 1), ("completed", 1)]
    assert parse_iso_ms(done["startedAt"]) >= parse_iso_ms(job["runAt"])


def test_a_long_delay_waits_for_the_sweeper_with_nothing_queued(service: Service) -> None:
    # When a job is posted an hour ahead
    job = service.create_job(ok_job(delaySeconds=3600))

    # Then it is scheduled and no message exists yet
    assert job["status"] == "scheduled"
    assert_run_at(job, 3600)
    assert sends_of(service, job["id"]) == []
    assert service.queue_is_empty()
    # and a sweep now releases nothing
    assert service.sweep().released == 0
    assert service.queue_is_empty()


def test_the_sweeper_releases_a_scheduled_job_release_ahead_seconds_early_with_the_right_delay(
    service: Service,
) -> None:
    # Given a job scheduled an hour ahead
    job = service.create_job(ok_job(delaySeconds=3600))
    run_at = parse_iso_ms(job["runAt"])
    ahead_ms = service.settings.release_ahead_seconds * 1000

    # When the sweeper runs just before the release window
    early = service.sweep(lambda: run_at - ahead_ms - 1000)

    # Then nothing is released
    assert early.released == 0
    assert service.queue_is_empty()

    # When it runs at runAt - release_ahead
    report = service.sweep(lambda: run_at - ahead_ms)

    # Then the job's message is sent, delayed by exactly the time left until runAt
    assert report.released == 1
    assert sends_of(service, job["id"]) == [service.settings.release_ahead_seconds]
    assert service.queue_counts() == {"visible": 0, "notvisible": 0, "delayed": 1}
    assert service.receive() == []
    # and the job is still scheduled (it has not run)
    assert service.job(job["id"])["status"] == "scheduled"

    # And a second sweep in the same window does not release it again
    assert service.sweep(lambda: run_at - ahead_ms + 500).released == 0


def test_a_job_released_by_the_sweeper_runs_at_its_run_at(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a job scheduled an hour ahead, and every clock moved to just before its release window
    job = service.create_job(ok_job(delaySeconds=3600))
    run_at = parse_iso_ms(job["runAt"])
    ahead_ms = service.settings.release_ahead_seconds * 1000
    offset = run_at - ahead_ms - system_clock()

    def shifted() -> int:
        return system_clock() + offset

    monkeypatch.setattr(consumer, "system_clock", shifted)

    # When the sweeper releases it and the queue is drained
    assert service.sweep(shifted).released == 1
    service.drain()

    # Then it ran at runAt (by the shifted clock), through pending, processing, completed
    done = service.job(job["id"])
    assert statuses(done) == [("scheduled", None), ("pending", None), ("processing", 1), ("completed", 1)]
    assert parse_iso_ms(done["startedAt"]) >= run_at - 1000  # SQS delays are whole seconds


def test_an_overdue_scheduled_job_is_released_once_per_grace_period(service: Service) -> None:
    # Given a job scheduled an hour ahead, and a sweeper that first runs long after runAt + grace
    job = service.create_job(ok_job(delaySeconds=3600))
    run_at = parse_iso_ms(job["runAt"])
    late = run_at + service.settings.pending_grace_seconds * 1000 + 60_000

    # When the sweeper runs, then again a second later
    first = service.sweep(lambda: late)
    second = service.sweep(lambda: late + 1000)

    # Then the job was released once: the second run waits for the first message to be consumed
    assert first.released == 1
    assert second.released == 0
    assert sends_of(service, job["id"]) == [0]


def test_an_early_message_for_a_scheduled_job_is_deferred_not_run(service: Service) -> None:
    # Given a job scheduled an hour ahead, and a stray message for it (a duplicate, an operator's redrive)
    job = service.create_job(ok_job(delaySeconds=3600))
    service.send_message_for(job["id"])

    # When the consumer gets the message
    response = service.deliver(service.receive())

    # Then the job does not run: the message is reported failed and hidden until runAt
    assert len(response["batchItemFailures"]) == 1
    assert service.job(job["id"])["status"] == "scheduled"
    assert service.queue_counts() == {"visible": 0, "notvisible": 1, "delayed": 0}


def test_a_stray_message_for_a_job_more_than_12_hours_ahead_is_handled_without_an_sqs_error(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job scheduled a day ahead, a stray message for it, and a record of SQS errors while deferring
    errors: list[StorageError] = []
    original = SqsJobQueue.defer

    def watched(self: SqsJobQueue, source_arn: str, receipt_handle: str, seconds: int) -> None:
        try:
            original(self, source_arn, receipt_handle, seconds)
        except StorageError as exc:
            errors.append(exc)
            raise

    monkeypatch.setattr(SqsJobQueue, "defer", watched)
    job = service.create_job(ok_job(delaySeconds=86_400))
    service.send_message_for(job["id"])

    # When the consumer gets it
    service.deliver(service.receive())

    # Then the job does not run, and SQS accepted whatever the consumer did with the message
    assert service.job(job["id"])["status"] == "scheduled"
    assert errors == []


@pytest.mark.parametrize("ago", [timedelta(seconds=1), timedelta(days=400)])
def test_a_run_at_in_the_past_means_now(service: Service, ago: timedelta) -> None:
    # When a job is posted with runAt in the past
    job = service.create_job(ok_job(runAt=(datetime.now(UTC) - ago).isoformat()))

    # Then it is pending at once, sent without delay, and runs
    assert job["status"] == "pending"
    assert job["runAt"] is None
    assert sends_of(service, job["id"]) == [0]
    service.drain()
    assert service.job(job["id"])["status"] == "completed"


def test_a_run_at_with_another_offset_is_the_same_instant_in_utc(service: Service) -> None:
    # Given a runAt thirty seconds ahead, written in UTC+05:30
    when = datetime.now(timezone(timedelta(hours=5, minutes=30))) + timedelta(seconds=30)

    # When the job is posted
    job = service.create_job(ok_job(runAt=when.isoformat()))

    # Then it is scheduled for that very instant, shown in UTC
    assert job["status"] == "scheduled"
    assert job["runAt"] == iso(int(when.timestamp() * 1000))
    assert job["runAt"].endswith("Z")
    # And SQS holds it back for what is left of the 30 s when it is sent (rounded up; a slow machine takes a few)
    [delay] = sends_of(service, job["id"])
    assert 20 <= delay <= 30, delay


def test_a_run_at_exactly_one_year_ahead_is_accepted(service: Service) -> None:
    job = service.create_job(ok_job(runAt=(datetime.now(UTC) + timedelta(days=365) - timedelta(seconds=5)).isoformat()))

    assert job["status"] == "scheduled"
    assert service.queue_is_empty()


def test_a_scheduled_job_cancelled_before_its_time_never_runs(service: Service) -> None:
    # Given a job due in one second, its message delayed in SQS
    job = service.create_job(ok_job(delaySeconds=1))

    # When it is cancelled before then, and the message arrives
    assert service.api("DELETE", f"/jobs/{job['id']}").status == 200
    time.sleep(1.1)
    service.drain()

    # Then it never ran
    final = service.job(job["id"])
    assert statuses(final) == [("scheduled", None), ("cancelled", None)]
    assert service.queue_is_empty()
