"""Fan-out batches on moto: POST /jobs/batch and GET /batches/{id} through the API handler, children run by the
consumer handler; the onComplete job is enqueued exactly once, with concurrent finishers and across a crash."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict

from functions.dal.batches import DynamoBatchStore
from functions.dal.clients import client
from functions.dal.jobs_repository import DynamoJobsRepository
from functions.handlers import consumer, sweeper
from functions.handlers.runtime import batch_settler, reset
from functions.logic.clock import iso, system_clock
from functions.logic.job_types import JobType, registry
from functions.models import responses
from functions.models.errors import StorageError
from functions.models.job import HistoryEntry, Job, JobMessage, JobStatus
from local.lambda_context import LocalContext
from tests.integration.harness import Service, failing_job, ok_job, statuses

ON_COMPLETE = {"type": "message", "payload": {"message": "x"}}


def create_batch(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    status, batch, headers = service.api("POST", "/jobs/batch", body)
    assert status == 202, batch
    assert headers["Location"] == f"/batches/{batch['id']}"
    return dict(batch)


def get_batch(service: Service, batch_id: str, key: Any = None) -> dict[str, Any]:
    status, batch, _ = service.api("GET", f"/batches/{batch_id}", **({"key": key} if key else {}))
    assert status == 200, batch
    return dict(batch)


def message_jobs(service: Service) -> list[dict[str, Any]]:
    status, page, _ = service.api("GET", "/jobs", query={"type": "message"})
    assert status == 200, page
    return list(page["jobs"])


def sends_for(service: Service, job_id: str) -> int:
    return sum(1 for params in service.sent if json.loads(params["MessageBody"]).get("jobId") == job_id)


def end_child(service: Service, job_id: str, status: JobStatus = JobStatus.COMPLETED) -> Job:
    """A child made final by a save alone (as the consumer's final save, before it calls the settler)."""
    job = service.record(job_id)
    now = iso(system_clock())
    final = job.model_copy(
        update={
            "status": status,
            "completed_at": now,
            "updated_at": now,
            "sweep_at": None,
            "history": (*job.history, HistoryEntry(status=status, at=now)),
        }
    )
    service.repo.save(job, final)
    return final.model_copy(update={"version": job.version + 1})


def run_together(calls: list[Callable[[], Any]]) -> list[BaseException]:
    """Start every call at the same instant, each in its own thread; returns what they raised."""
    barrier = threading.Barrier(len(calls))
    raised: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            raised.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return raised


@contextmanager
def meetings_before_first_calls(methods: tuple[str, ...], parties: int) -> Iterator[None]:
    """Within the block, the first call of each ``DynamoBatchStore.<method>`` in each of ``parties`` threads waits
    until all of them have come to it: the worst interleaving, every time."""
    with pytest.MonkeyPatch.context() as patch:
        for method in methods:
            patch.setattr(DynamoBatchStore, method, _meeting(getattr(DynamoBatchStore, method), parties))
        yield


def _meeting(real: Callable[..., Any], parties: int) -> Callable[..., Any]:
    barrier = threading.Barrier(parties)
    first = threading.local()

    def meeting(self: DynamoBatchStore, *args: Any) -> Any:
        if not getattr(first, "done", False):
            first.done = True
            barrier.wait(timeout=10)
        return real(self, *args)

    return meeting


def test_a_batch_completes_and_its_on_complete_job_runs_once(service: Service) -> None:
    # Given a batch of three jobs whose onComplete job is told the batch's id
    batch = create_batch(
        service,
        {
            "jobs": [ok_job("a.png"), ok_job("b.png"), ok_job("c.png")],
            "onComplete": {"type": "message", "payload": {"message": "$batchId"}},
        },
    )
    assert (batch["status"], batch["total"], len(batch["jobIds"])) == ("running", 3, 3)
    assert batch["onComplete"] == {"type": "message"}
    responses.BatchAccepted.model_validate(batch)  # the documented shape
    # Then the children are jobs of the batch, pending, counted while they wait
    running = get_batch(service, batch["id"])
    assert running["counts"]["pending"] == 3 and running["completedAt"] is None
    assert all(service.job(job_id)["batchId"] == batch["id"] for job_id in batch["jobIds"])

    # When the queue is drained (the children run, then the onComplete job)
    service.drain()

    # Then the batch is completed, every child counted as completed
    done = get_batch(service, batch["id"])
    assert done["status"] == "completed"
    assert done["counts"] == {**{status.value: 0 for status in JobStatus}, "completed": 3}
    assert done["completedAt"] >= done["createdAt"]
    assert done["jobIds"] == batch["jobIds"]
    responses.Batch.model_validate(done)
    responses.Batch.model_validate(running)
    # And its onComplete job ran, once, with the batch's id, and is not one of the children
    follow_up_id = done["onComplete"]["jobId"]
    follow_up = service.job(follow_up_id)
    assert (follow_up["status"], follow_up["result"]) == ("completed", batch["id"])
    assert "batchId" not in follow_up
    assert [job["id"] for job in message_jobs(service)] == [follow_up_id]
    assert sends_for(service, follow_up_id) == 1
    stats = service.stats()
    assert (stats["enqueued"], stats["completed"]) == (4, 4)


def test_a_batch_with_a_failing_child_ends_completed_with_failures(service: Service) -> None:
    batch = create_batch(
        service,
        {
            "jobs": [ok_job(), failing_job(max_attempts=1)],
            "onComplete": {"type": "message", "payload": {"message": "x"}},
        },
    )
    service.drain()
    done = get_batch(service, batch["id"])
    assert done["status"] == "completed_with_failures"
    assert (done["counts"]["completed"], done["counts"]["failed"]) == (1, 1)
    assert service.job(done["onComplete"]["jobId"])["status"] == "completed"
    service.dead_letters(1)  # the failed child's message, as for any failed job


def test_one_bad_spec_is_a_400_naming_its_index_and_nothing_is_written(service: Service) -> None:
    # Given a batch whose second spec has an invalid payload
    body = {"jobs": [ok_job(), {"type": "simulate", "payload": {"failureRate": 3}}, ok_job()]}

    # When it is posted
    status, error, _ = service.api("POST", "/jobs/batch", body)

    # Then it is refused with the payload's code, naming the spec
    assert status == 400
    assert error["code"] == "INVALID_PAYLOAD"
    assert error["error"].startswith("jobs[1]: ")
    assert (error["details"]["index"], error["details"]["at"]) == (1, "jobs[1]")
    # And nothing was stored or queued
    assert service.dynamodb.scan(TableName=service.settings.jobs_table)["Count"] == 0
    assert service.stats()["enqueued"] == 0
    assert service.queue_is_empty()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jobs": []}, "INVALID_BODY"),
        ({"jobs": [ok_job()] * 101}, "INVALID_BODY"),
        ({"jobs": [ok_job(idempotencyKey="k")]}, "INVALID_OPTION"),
        ({"jobs": [ok_job()], "onComplete": {"type": "nope"}}, "INVALID_TYPE"),
    ],
)
def test_invalid_batches_answer_the_contract_codes(service: Service, body: dict[str, Any], code: str) -> None:
    status, error, _ = service.api("POST", "/jobs/batch", body)
    assert (status, error["code"]) == (400, code)
    assert service.stats()["enqueued"] == 0


def test_a_keyed_batch_sent_twice_is_one_batch(service: Service) -> None:
    # Given a batch accepted with an Idempotency-Key
    body = {"jobs": [ok_job("a"), ok_job("b")], "onComplete": ON_COMPLETE}
    status, first, _ = service.api("POST", "/jobs/batch", body, headers={"Idempotency-Key": "order-7"})
    assert status == 202, first

    # When the same request comes again, the key in the body this time
    status, again, headers = service.api("POST", "/jobs/batch", {**body, "idempotencyKey": "order-7"})

    # Then it answers the first batch, replayed, and only its jobs exist
    assert (status, headers["Idempotent-Replayed"], headers["Location"]) == (200, "true", f"/batches/{first['id']}")
    assert again == first
    service.drain()
    assert get_batch(service, first["id"])["status"] == "completed"
    assert service.stats()["enqueued"] == 3  # two children and the onComplete job

    # And another body under that key is a conflict naming the batch
    status, error, _ = service.api("POST", "/jobs/batch", {"jobs": [ok_job("c")], "idempotencyKey": "order-7"})
    assert (status, error["code"], error["details"]) == (409, "IDEMPOTENCY_CONFLICT", {"batchId": first["id"]})


def test_a_keyed_batch_that_failed_between_its_chunks_is_finished_by_the_retry(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a keyed request of 100 jobs in two chunks, whose second chunk's write failed
    body = {"jobs": [ok_job(f"t{n}") for n in range(100)], "onComplete": ON_COMPLETE, "idempotencyKey": "import-1"}
    monkeypatch.setattr("functions.dal.jobs_repository.records._CREATE_CHUNK_JOBS", 60)
    transact = DynamoJobsRepository._transact
    chunks_written: list[int] = []

    def second_chunk_fails(repo: DynamoJobsRepository, items: list[dict[str, Any]]) -> None:
        if len(items) > 1:
            if chunks_written:
                raise StorageError("DynamoDB write failed: ProvisionedThroughputExceededException")
            chunks_written.append(len(items))
        transact(repo, items)

    with monkeypatch.context() as outage:
        outage.setattr(DynamoJobsRepository, "_transact", second_chunk_fails)
        status, error, _ = service.api("POST", "/jobs/batch", body)
    assert (status, error["code"]) == (503, "UNAVAILABLE")
    assert chunks_written == [60] and service.stats()["enqueued"] == 60

    # When the client sends it again
    status, batch, headers = service.api("POST", "/jobs/batch", body)

    # Then the first chunk is kept, the second written, the batch item too, and the batch completes once
    assert (status, headers["Idempotent-Replayed"]) == (200, "true"), batch
    assert len(set(batch["jobIds"])) == 100
    service.drain()
    assert get_batch(service, batch["id"])["status"] == "completed"
    stats = service.stats()
    assert (stats["enqueued"], stats["completed"]) == (101, 101)


def test_a_batch_is_the_tenants_own(service: Service) -> None:
    batch = create_batch(service, {"jobs": [ok_job()]})
    for key, batch_id in [(service.key_b, batch["id"]), (service.key_a, "00000000-0000-4000-8000-000000000000")]:
        status, error, _ = service.api("GET", f"/batches/{batch_id}", key=key)
        assert (status, error["code"]) == (404, "NOT_FOUND")
    status, error, _ = service.api("GET", f"/batches/{batch['id']}", key=None)
    assert (status, error["code"]) == (403, "FORBIDDEN")


def test_concurrent_settlers_enqueue_on_complete_exactly_once(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch whose children are all final, but whose settlers have not run yet
    batch = create_batch(service, {"jobs": [ok_job("a"), ok_job("b")], "onComplete": ON_COMPLETE})
    finals = [end_child(service, job_id) for job_id in batch["jobIds"]]

    # When eight settlers (the two finishers and their redeliveries) run at the same instant, all of them reading the
    # batch as due before any of them writes
    settler = batch_settler()
    with meetings_before_first_calls(("settle",), parties=8):
        raised = run_together([lambda job=job: settler.job_final(job) for job in finals * 4])

    # Then exactly one onComplete job exists, sent once, and the batch names it
    assert raised == []
    done = get_batch(service, batch["id"])
    assert done["status"] == "completed"
    assert [job["id"] for job in message_jobs(service)] == [done["onComplete"]["jobId"]]
    assert sends_for(service, done["onComplete"]["jobId"]) == 1
    assert service.stats()["enqueued"] == 3


def test_the_last_two_children_finishing_at_once_on_two_consumers(service: Service) -> None:
    # Given a batch of two whose messages are both received
    batch = create_batch(service, {"jobs": [ok_job("a"), ok_job("b")], "onComplete": ON_COMPLETE})
    messages = service.receive()
    assert sorted(JobMessage.model_validate_json(m["Body"]).job_id for m in messages) == sorted(batch["jobIds"])
    for message in messages:
        service.sqs.delete_message(QueueUrl=service.queue_url, ReceiptHandle=message["ReceiptHandle"])

    # When two consumer invocations run one child each, at the same instant, both reading the batch only after
    # both children's final saves (so each sees it due), and neither settling before both try
    def consume(message: dict[str, Any]) -> Callable[[], Any]:
        record = SQSRecord(service.records._record(message))
        return lambda: consumer.record_handler(record, LocalContext("consumer", 5))

    with meetings_before_first_calls(("get", "settle"), parties=2):
        raised = run_together([consume(message) for message in messages])

    # Then both children completed and the onComplete job was enqueued exactly once
    assert raised == []
    done = get_batch(service, batch["id"])
    assert (done["status"], done["counts"]["completed"]) == ("completed", 2)
    follow_up_id = done["onComplete"]["jobId"]
    assert [job["id"] for job in message_jobs(service)] == [follow_up_id]
    assert sends_for(service, follow_up_id) == 1
    service.drain()
    assert service.job(follow_up_id)["status"] == "completed"


def test_a_crash_between_the_final_save_and_settling_is_healed_by_the_redelivery(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of one, and a consumer that dies right after the child's final save (the batch read fails)
    batch = create_batch(service, {"jobs": [ok_job()], "onComplete": {"type": "message", "payload": {"message": "x"}}})
    real_get = DynamoBatchStore.get
    crashes = iter([True])

    def crashing_get(self: DynamoBatchStore, tenant: str, batch_id: str) -> Any:
        if next(crashes, False):
            raise StorageError("the consumer died here")
        return real_get(self, tenant, batch_id)

    monkeypatch.setattr(DynamoBatchStore, "get", crashing_get)

    # When the child's message is delivered
    [message] = service.receive()
    response = service.deliver([message])

    # Then the child is completed, but the message was reported failed (left on the queue) and the batch is running
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert service.job(batch["jobIds"][0])["status"] == "completed"
    assert get_batch(service, batch["id"])["status"] == "running"
    assert message_jobs(service) == []

    # When the message comes back (its visibility timeout, here cut short) and the queue is drained
    service.sqs.change_message_visibility(
        QueueUrl=service.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    service.drain()

    # Then the redelivery found the child final and completed the batch: its onComplete job ran, once
    done = get_batch(service, batch["id"])
    assert done["status"] == "completed"
    [follow_up] = message_jobs(service)
    assert follow_up["id"] == done["onComplete"]["jobId"] and follow_up["status"] == "completed"
    assert sends_for(service, follow_up["id"]) == 1
    assert service.job(batch["jobIds"][0])["attempts"] == 1  # the child did not run again


def test_a_retried_child_does_not_reopen_a_completed_batch(service: Service) -> None:
    batch = create_batch(
        service,
        {
            "jobs": [ok_job(), failing_job(max_attempts=1)],
            "onComplete": {"type": "message", "payload": {"message": "x"}},
        },
    )
    service.drain()
    service.dead_letters(1)
    failed_id = batch["jobIds"][1]
    status, _, _ = service.api("POST", f"/jobs/{failed_id}/retry")
    assert status == 202
    service.drain()
    done = get_batch(service, batch["id"])
    assert done["status"] == "completed_with_failures"
    assert done["counts"]["failed"] == 1  # it failed again; the batch was not reopened or settled again
    assert len(message_jobs(service)) == 1
    service.dead_letters(1)


class BlobPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blob: str


@pytest.fixture
def blob_type(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(registry._REGISTRY, "test-blob", JobType("test-blob", BlobPayload, lambda p, ctx: len(p.blob)))
    return "test-blob"


def test_large_children_are_written_in_several_transactions_or_kept_in_s3(service: Service, blob_type: str) -> None:
    # Given 14 children of 250 KiB each (inline, 3.5 MB together: over one transaction's budget) and one of 300 KiB
    transactions: list[int] = []
    client("dynamodb").meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: transactions.append(len(params["TransactItems"])),
    )
    inline = [{"type": blob_type, "payload": {"blob": chr(97 + i) * (250 * 1024)}} for i in range(14)]
    offloaded = {"type": blob_type, "payload": {"blob": "o" * (300 * 1024)}}

    # When they are posted as one batch
    batch = create_batch(service, {"jobs": [*inline, offloaded]})

    # Then the children were written in two transactions (by size), and counted exactly
    assert transactions == [13, 2]
    assert service.stats()["enqueued"] == 15
    # And the largest one is kept in S3, like any job's
    assert service.record(batch["jobIds"][-1]).payload_ref is not None
    assert service.job(batch["jobIds"][-1])["payload"] == offloaded["payload"]
    service.drain()
    assert get_batch(service, batch["id"])["counts"]["completed"] == 15


def test_the_batch_item_is_not_a_job(service: Service) -> None:
    # The batch lives in the jobs table beside its children, but no listing or counter sees it
    batch = create_batch(service, {"jobs": [ok_job()]})
    _, page, _ = service.api("GET", "/jobs")
    assert [job["id"] for job in page["jobs"]] == batch["jobIds"]
    assert service.stats()["total"] == 1


def test_cancelling_the_last_waiting_child_completes_the_batch(service: Service) -> None:
    # Given a batch whose only child is scheduled ten minutes ahead
    batch = create_batch(service, {"jobs": [ok_job(delaySeconds=600)], "onComplete": ON_COMPLETE})

    # When the child is cancelled
    status, cancelled, _ = service.api("DELETE", f"/jobs/{batch['jobIds'][0]}")
    assert (status, cancelled["status"]) == (200, "cancelled")

    # Then the batch is complete, with failures, and its onComplete job is enqueued
    done = get_batch(service, batch["id"])
    assert (done["status"], done["counts"]["cancelled"]) == ("completed_with_failures", 1)
    [follow_up] = message_jobs(service)
    assert follow_up["id"] == done["onComplete"]["jobId"]


class Killed(BaseException):
    """The consumer's invocation dies mid-attempt (a timeout, a crash): nothing records the attempt's outcome."""


class NoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def test_a_child_whose_last_attempt_died_with_its_message_is_failed_by_the_sweeper_and_settles_its_batch(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sweeper that looks at an in-flight job as soon as its lease ends, and a job type whose attempt dies
    monkeypatch.setenv("JOBS_IN_FLIGHT_GRACE_SECONDS", "0")
    reset()

    def die(payload: NoPayload, ctx: Any) -> None:
        raise Killed()

    monkeypatch.setitem(registry._REGISTRY, "test-killed", JobType("test-killed", NoPayload, die))
    # And a batch of one such child (a single attempt) with an onComplete job
    batch = create_batch(
        service, {"jobs": [{"type": "test-killed", "payload": {}, "maxAttempts": 1}], "onComplete": ON_COMPLETE}
    )
    [child_id] = batch["jobIds"]
    # And its attempt died (a one-second invocation: a one-second lease), and then its message was lost
    [message] = service.receive()
    with pytest.raises(Killed):
        consumer.handler({"Records": [service.records._record(message)]}, LocalContext("consumer", 1))
    service.sqs.delete_message(QueueUrl=service.queue_url, ReceiptHandle=message["ReceiptHandle"])
    orphan = service.record(child_id)
    assert (orphan.status, orphan.attempts, orphan.max_attempts) == (JobStatus.PROCESSING, 1, 1)
    assert orphan.lease_until_ms is not None
    time.sleep(max(0.0, orphan.lease_until_ms - system_clock()) / 1000 + 0.1)

    # When the sweeper's handler runs, twice
    first = sweeper.handler({}, LocalContext("sweeper", 60))
    second = sweeper.handler({}, LocalContext("sweeper", 60))

    # Then the child ended failed, once, saying why
    assert (first["orphans_failed"], first["orphans_resent"], second["orphans_failed"]) == (1, 0, 0)
    failed = service.job(child_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "did not finish" in failed["error"]
    assert [status for status, _ in statuses(failed)] == ["pending", "processing", "failed"]
    # And its batch is settled with the failure counted, and its onComplete job was enqueued once and runs
    done = get_batch(service, batch["id"])
    assert (done["status"], done["counts"]["failed"]) == ("completed_with_failures", 1)
    [follow_up] = message_jobs(service)
    assert follow_up["id"] == done["onComplete"]["jobId"]
    # (counted on the queue: after reset() the functions' clients are new ones, which ``service.sent`` does not see)
    [sent] = service.receive()
    assert JobMessage.model_validate_json(sent["Body"]).job_id == follow_up["id"]
    service.deliver([sent])
    assert service.job(follow_up["id"])["status"] == "completed"
    assert service.queue_is_empty()
