"""Large payloads: kept in S3 with a pointer on the record, loaded back for the handler and for GET /jobs/{id}."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from functions.logic.consume import ConsumerSettings, JobDeferred, MessageConsumer, Outcome
from functions.logic.enqueue import EnqueueSettings, JobSpec, enqueue
from functions.logic.job_types import JobContext
from functions.logic.payloads import payload_key, placeholder, with_full_payload
from functions.models.errors import StorageError
from functions.models.job import JobStatus
from tests.unit.fake_files import InMemoryFileStore
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, RegisterJobType, message_body

INLINE_MAX = 1024
SETTINGS = EnqueueSettings(pending_grace_seconds=120, release_ahead_seconds=900, payload_inline_max_bytes=INLINE_MAX)
TENANT = "tenant-a"


class BlobPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blob: str


def _payload(size: int) -> dict[str, Any]:
    """A payload whose compact JSON is exactly ``size`` bytes."""
    skeleton = len(json.dumps({"blob": ""}, separators=(",", ":")))
    return {"blob": "x" * (size - skeleton)}


def _size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


@pytest.fixture
def files() -> InMemoryFileStore:
    return InMemoryFileStore()


@pytest.fixture
def blob_type(register_job_type: RegisterJobType) -> tuple[str, list[dict[str, Any]]]:
    """A job type that records the payload its handler was given."""
    seen: list[dict[str, Any]] = []

    def handler(payload: BlobPayload, ctx: JobContext) -> dict[str, int]:
        seen.append(payload.model_dump())
        return {"chars": len(payload.blob)}

    return register_job_type("blob", handler, payload=BlobPayload), seen


def _enqueue(
    payload: dict[str, Any],
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
) -> Any:
    return enqueue(JobSpec(type="blob", payload=payload), TENANT, repo, queue, clock, SETTINGS, files=lambda: files)


def test_a_payload_up_to_the_inline_limit_stays_on_the_record_and_s3_is_never_built(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a payload of exactly the inline limit, and a store that must not be asked for
    payload = _payload(INLINE_MAX)

    def no_store() -> InMemoryFileStore:
        raise AssertionError("S3 is not needed for a small payload")

    # When it is enqueued
    job = enqueue(JobSpec(type="blob", payload=payload), TENANT, repo, queue, clock, SETTINGS, files=no_store)
    # Then the record holds it, with no pointer
    stored = repo.get(TENANT, job.id)
    assert stored is not None and stored.payload == payload and stored.payload_ref is None


def test_a_larger_payload_goes_to_s3_and_the_record_keeps_a_pointer_and_a_placeholder(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, files: InMemoryFileStore
) -> None:
    # Given a payload one byte over the inline limit
    payload = _payload(INLINE_MAX + 1)
    # When it is enqueued
    job = _enqueue(payload, repo, queue, clock, files)
    # Then S3 holds it, as JSON, under payloads/<tenant>/<job id>.json
    key = payload_key(TENANT, job.id)
    assert key == f"payloads/{TENANT}/{job.id}.json"
    data, content_type = files.objects[key]
    assert json.loads(data) == payload and content_type == "application/json"
    # And the record points at it, holding only a placeholder
    stored = repo.get(TENANT, job.id)
    assert stored is not None
    assert stored.payload_ref == key
    assert stored.payload == placeholder(INLINE_MAX + 1) == {"$offloaded": True, "bytes": INLINE_MAX + 1}
    # And the caller still sees its own payload, and the message is sent as usual (a pointer to the record)
    assert job.payload == payload
    assert queue.sent_job_ids() == [job.id]


def test_when_s3_fails_nothing_is_stored_or_sent(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, files: InMemoryFileStore
) -> None:
    # Given S3 refusing writes
    files.fail_puts = True
    # When a large payload is enqueued
    with pytest.raises(StorageError):
        _enqueue(_payload(INLINE_MAX * 4), repo, queue, clock, files)
    # Then no record points at a missing payload, and nothing was sent
    assert repo.all_jobs() == [] and queue.sends == []


def test_the_consumer_hands_the_full_payload_to_the_handler_and_keeps_the_record_small(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
    blob_type: tuple[str, list[dict[str, Any]]],
) -> None:
    # Given an enqueued job with an offloaded payload
    _, seen = blob_type
    payload = _payload(INLINE_MAX * 10)
    job = _enqueue(payload, repo, queue, clock, files)
    consumer = _consumer(repo, queue, clock, files)
    # When its message is delivered
    outcome = consumer.handle(message_body(job), "arn", "receipt", 30_000)
    # Then the handler saw the whole payload and the job completed
    assert outcome is Outcome.COMPLETED
    assert seen == [payload]
    done = repo.get(TENANT, job.id)
    assert done is not None and done.status == JobStatus.COMPLETED and done.result == {"chars": len(payload["blob"])}
    # And the record still holds the pointer, not the payload
    assert done.payload == placeholder(INLINE_MAX * 10) and done.payload_ref == payload_key(TENANT, job.id)


def test_a_payload_gone_from_s3_fails_the_job_permanently(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
    blob_type: tuple[str, list[dict[str, Any]]],
) -> None:
    # Given an offloaded payload that has since been deleted (expired by the lifecycle, say)
    job = _enqueue(_payload(INLINE_MAX * 2), repo, queue, clock, files)
    files.objects.clear()
    # When the job is delivered
    outcome = _consumer(repo, queue, clock, files).handle(message_body(job), "arn", "receipt", 30_000)
    # Then no retry is wasted: it failed at once, saying why, and its message went to the DLQ
    assert outcome is Outcome.FAILED
    failed = repo.get(TENANT, job.id)
    assert failed is not None and failed.status == JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and "payload is gone" in failed.error
    assert len(queue.dead_letters) == 1


def test_s3_unavailable_while_loading_is_retried(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
    blob_type: tuple[str, list[dict[str, Any]]],
) -> None:
    # Given an offloaded payload, and S3 failing reads for now
    job = _enqueue(_payload(INLINE_MAX * 2), repo, queue, clock, files)
    files.fail_gets = True
    # When the job is delivered
    with pytest.raises(JobDeferred):
        _consumer(repo, queue, clock, files).handle(message_body(job), "arn", "receipt", 30_000)
    # Then the attempt is retried later, like any transient failure
    retrying = repo.get(TENANT, job.id)
    assert retrying is not None and retrying.status == JobStatus.RETRYING
    assert retrying.error is not None and "simulated outage" in retrying.error


def test_reading_a_record_back_restores_the_payload_or_keeps_the_placeholder_once_it_expired(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, files: InMemoryFileStore
) -> None:
    # Given an offloaded job's stored record
    payload = _payload(INLINE_MAX * 3)
    job = _enqueue(payload, repo, queue, clock, files)
    stored = repo.get(TENANT, job.id)
    assert stored is not None
    # Then GET /jobs/{id} shows the whole payload, and never the pointer
    shown = with_full_payload(stored, files).to_api()
    assert shown["payload"] == payload and "payloadRef" not in shown and "payload_ref" not in shown
    # And once the object is gone, the placeholder rather than an error
    files.objects.clear()
    assert with_full_payload(stored, files).payload == placeholder(_size(payload))


def _consumer(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, files: InMemoryFileStore
) -> MessageConsumer:
    return MessageConsumer(repo=repo, queue=queue, clock=clock, settings=ConsumerSettings(1, 4), files=lambda: files)
