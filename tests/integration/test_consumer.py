"""The consumer handler fed from the real (moto) queue: completion, retries to the DLQ, partial batches,
duplicates and cancellation."""

from __future__ import annotations

import json

from functions.handlers import consumer
from functions.logic.clock import system_clock
from functions.models.job import JobMessage, JobStatus
from local.lambda_context import LocalContext
from tests.integration.harness import TENANT_A, Service, failing_job, make_job, ok_job, statuses


def message_job_id(message: dict[str, object]) -> str:
    return JobMessage.model_validate_json(str(message["Body"])).job_id


def test_a_job_completes_with_its_result(service: Service) -> None:
    # Given an accepted fetch job
    job = service.create_job(
        {"type": "simulate", "payload": {"action": "fetch", "target": "https://x.test", "failureRate": 0}}
    )

    # When the queue is drained
    responses = service.drain()

    # Then it completed on its first attempt, nothing was reported failed, nothing dead-lettered
    done = service.job(job["id"])
    assert responses == [{"batchItemFailures": []}]
    assert (done["status"], done["attempts"], done["error"]) == ("completed", 1, None)
    assert done["result"] == "Fetched https://x.test (simulated)"
    assert statuses(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert done["createdAt"] <= done["startedAt"] <= done["completedAt"] == done["updatedAt"]
    stats = service.stats()
    assert (stats["completed"], stats["pending"], stats["processed"], stats["completionRate"]) == (1, 0, 1, 1.0)
    assert service.queue_is_empty(service.dlq_url)


def test_a_failing_job_is_retried_to_exhaustion_then_failed_and_dead_lettered(service: Service) -> None:
    # Given a job that fails every attempt, allowed 3 attempts
    job = service.create_job(failing_job(max_attempts=3))

    # When the queue is drained (the retries wait for their backoff)
    service.drain(timeout=30)

    # Then it ran exactly 3 times and failed, with one history entry per transition
    failed = service.job(job["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert statuses(failed) == [
        ("pending", None),
        ("processing", 1),
        ("retrying", 1),
        ("processing", 2),
        ("retrying", 2),
        ("processing", 3),
        ("failed", 3),
    ]
    assert failed["error"] == "Simulated failure of resize (shouldFail)"
    assert all(entry["error"] == failed["error"] for entry in failed["history"] if entry["status"] == "retrying")
    assert failed["completedAt"] is not None
    # the retries waited their backoff (at least 1 s after each failure)
    history = failed["history"]
    assert history[3]["at"] > history[2]["at"]
    assert history[5]["at"] > history[4]["at"]

    # And its message is in the DLQ, naming the job, with the reason
    (dead,) = service.dead_letters(1)
    assert json.loads(dead["Body"]) == {"v": 1, "tenant": TENANT_A, "jobId": job["id"], "type": job["type"]}
    assert dead["MessageAttributes"]["reason"]["StringValue"] == failed["error"]
    assert service.queue_is_empty()
    stats = service.stats()
    assert (stats["failed"], stats["retrying"], stats["processing"], stats["failureRate"]) == (1, 0, 0, 1.0)


def test_max_attempts_one_fails_after_a_single_attempt(service: Service) -> None:
    # Given a failing job allowed one attempt
    job = service.create_job(failing_job(max_attempts=1))

    # When drained
    responses = service.drain()

    # Then it failed at once, without a retry, and went to the DLQ
    failed = service.job(job["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert statuses(failed) == [("pending", None), ("processing", 1), ("failed", 1)]
    assert responses == [{"batchItemFailures": []}]
    (dead,) = service.dead_letters(1)
    assert message_job_id(dead) == job["id"]


def test_a_permanent_error_fails_the_job_at_once_despite_attempts_left(service: Service) -> None:
    # Given a stored job whose type no longer exists (it can never run), allowed 3 attempts
    job = make_job(created_ms=system_clock(), job_type="retired-type")
    service.repo.create(job)
    service.send_message_for(job.id)

    # When drained
    service.drain()

    # Then it failed on its first attempt and was dead-lettered
    failed = service.record(job.id)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
    assert failed.error is not None
    assert failed.error.startswith("cannot run this job")
    assert [entry.status for entry in failed.history][-2:] == [JobStatus.PROCESSING, JobStatus.FAILED]
    service.dead_letters(1)


def test_a_partial_batch_reports_only_the_retrying_record_and_dead_letters_the_malformed_one(
    service: Service,
) -> None:
    # Given one batch holding a good job, a malformed message and a failing job
    good = service.create_job(ok_job())
    bad = service.create_job(failing_job(max_attempts=3))
    service.sqs.send_message(QueueUrl=service.queue_url, MessageBody="not json")
    messages = service.receive()
    assert len(messages) == 3
    by_body = {message["Body"]: message for message in messages}
    failing_message = next(m for m in messages if m["Body"] != "not json" and message_job_id(m) == bad["id"])

    # When the consumer handles the batch
    response = service.deliver(messages)

    # Then only the failing job's record is reported failed
    assert response == {"batchItemFailures": [{"itemIdentifier": failing_message["MessageId"]}]}
    # the good one completed
    assert service.job(good["id"])["status"] == "completed"
    # the failing one waits for its retry, its message still in the queue (in flight)
    retrying = service.job(bad["id"])
    assert (retrying["status"], retrying["attempts"]) == ("retrying", 1)
    assert service.queue_counts() == {"visible": 0, "notvisible": 1, "delayed": 0}
    # the malformed one is in the DLQ, not retried
    (dead,) = service.dead_letters(1)
    assert dead["Body"] == by_body["not json"]["Body"]
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "malformed message"


def test_malformed_messages_of_every_kind_go_to_the_dlq_without_failing_the_batch(service: Service) -> None:
    # Given messages that are not job messages
    bodies = ["{}", '{"jobId": 5}', '{"tenant": "", "jobId": "x"}', "[1, 2]", '{"tenant": "t"}', "\u00e9\u00e8"]
    for body in bodies:
        service.sqs.send_message(QueueUrl=service.queue_url, MessageBody=body)

    # When drained
    responses = service.drain()

    # Then none was reported failed, and all are in the DLQ
    assert all(response == {"batchItemFailures": []} for response in responses)
    dead = service.dead_letters(len(bodies))
    assert sorted(message["Body"] for message in dead) == sorted(bodies)


def test_a_message_for_an_unknown_job_is_dropped(service: Service) -> None:
    # Given a well-formed message pointing at no record
    service.send_message_for("0b6f2d5e-0000-4000-8000-000000000000")

    # When drained
    responses = service.drain()

    # Then it is deleted, neither retried nor dead-lettered
    assert responses == [{"batchItemFailures": []}]
    assert service.queue_is_empty(service.dlq_url)


def test_a_duplicate_message_after_completion_does_not_run_the_job_again(service: Service) -> None:
    # Given a completed job
    job = service.create_job(ok_job())
    service.drain()
    done = service.job(job["id"])
    stats = service.stats()

    # When its message is delivered again, twice
    service.send_message_for(job["id"])
    service.send_message_for(job["id"])
    responses = service.drain()

    # Then the duplicates are consumed and dropped: record and counters untouched
    assert all(response == {"batchItemFailures": []} for response in responses)
    assert service.job(job["id"]) == done
    assert [status for status, _ in statuses(done)].count("processing") == 1
    assert service.stats() == stats
    assert service.queue_is_empty(service.dlq_url)


def test_the_same_record_delivered_twice_runs_the_job_once(service: Service) -> None:
    # Given a received message
    job = service.create_job(ok_job())
    (message,) = service.receive()
    record = service.records._record(message)

    # When the consumer is invoked twice with the very same record (Lambda retrying an invocation)
    first = consumer.handler({"Records": [record]}, LocalContext("consumer", 5))
    after_first = service.job(job["id"])
    second = consumer.handler({"Records": [record]}, LocalContext("consumer", 5))

    # Then both succeed, but the job ran once
    assert first == second == {"batchItemFailures": []}
    assert service.job(job["id"]) == after_first
    assert statuses(after_first) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert service.stats()["completed"] == 1


def test_two_copies_in_one_batch_run_the_job_once(service: Service) -> None:
    # Given a job whose message was sent twice (e.g. by the sweeper too)
    job = service.create_job(ok_job())
    service.send_message_for(job["id"])
    messages = service.receive()
    assert len(messages) == 2

    # When both arrive in one batch
    response = service.deliver(messages)

    # Then one copy ran it, the other was dropped, and both are deleted
    assert response == {"batchItemFailures": []}
    done = service.job(job["id"])
    assert statuses(done) == [("pending", None), ("processing", 1), ("completed", 1)]
    assert service.queue_is_empty()


def test_a_copy_arriving_while_another_consumer_holds_the_job_waits_for_its_lease(service: Service) -> None:
    # Given a job another consumer is running right now (a live lease of 60 s)
    job = service.create_job(ok_job())
    record = service.record(job["id"])
    running = record.model_copy(
        update={"status": JobStatus.PROCESSING, "attempts": 1, "lease_until_ms": system_clock() + 60_000}
    )
    service.repo.save(record, running)

    # When a copy of its message is delivered
    messages = service.receive()
    response = service.deliver(messages)

    # Then that copy does not start a second attempt, and is kept (hidden until the lease ends), not deleted
    stored = service.record(job["id"])
    assert (stored.status, stored.attempts) == (JobStatus.PROCESSING, 1)
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == [messages[0]["MessageId"]]
    assert service.queue_counts()["notvisible"] == 1


def test_a_job_whose_consumer_died_is_taken_over_after_its_lease(service: Service) -> None:
    # Given a job left processing by a consumer that died (lease expired)
    job = service.create_job(ok_job())
    record = service.record(job["id"])
    service.repo.save(
        record,
        record.model_copy(update={"status": JobStatus.PROCESSING, "attempts": 1, "lease_until_ms": system_clock() - 1}),
    )

    # When its message comes back
    service.drain()

    # Then attempt 2 runs it, and the lost attempt is on record
    done = service.job(job["id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert statuses(done)[-3:] == [("retrying", 1), ("processing", 2), ("completed", 2)]
    assert service.stats()["completed"] == 1
    assert service.stats()["processing"] == 0


def test_a_cancelled_job_whose_message_is_queued_never_runs(service: Service) -> None:
    # Given a job whose message is already in the queue
    job = service.create_job(ok_job())
    assert service.queue_counts()["visible"] == 1

    # When it is cancelled, then the queue is drained
    status, _, _ = service.api("DELETE", f"/jobs/{job['id']}")
    assert status == 200
    responses = service.drain()

    # Then it stays cancelled, never processed, and its message is gone (deleted, not dead-lettered)
    cancelled = service.job(job["id"])
    assert cancelled["status"] == "cancelled"
    assert statuses(cancelled) == [("pending", None), ("cancelled", None)]
    assert (cancelled["attempts"], cancelled["startedAt"], cancelled["result"]) == (0, None, None)
    assert responses == [{"batchItemFailures": []}]
    assert service.queue_is_empty()
    assert service.queue_is_empty(service.dlq_url)


def test_a_job_cancelled_while_retrying_never_runs_again(service: Service) -> None:
    # Given a job that failed its first attempt and waits for a retry
    job = service.create_job(failing_job(max_attempts=3))
    service.deliver(service.receive())
    assert service.job(job["id"])["status"] == "retrying"

    # When it is cancelled, and its message comes back after the backoff
    status, cancelled, _ = service.api("DELETE", f"/jobs/{job['id']}")
    assert (status, cancelled["status"]) == (200, "cancelled")
    service.drain()

    # Then it never ran again
    final = service.job(job["id"])
    assert statuses(final) == [("pending", None), ("processing", 1), ("retrying", 1), ("cancelled", None)]
    assert final["attempts"] == 1
    assert service.queue_is_empty()
    assert service.queue_is_empty(service.dlq_url)
    stats = service.stats()
    assert (stats["cancelled"], stats["retrying"], stats["total"]) == (1, 0, 1)
