"""Large payloads: kept in S3 with a pointer on the record, loaded back for the handler and for GET /jobs/{id}."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import BaseModel, ConfigDict

from functions.dal.files import S3FileStore
from functions.logic.consume import ConsumerSettings, JobDeferred, MessageConsumer, Outcome
from functions.logic.enqueue import EnqueueSettings, JobSpec, submit
from functions.logic.job_types import JobContext
from functions.logic.payloads import max_schedule_days, payload_key, placeholder, with_full_payload
from functions.models.errors import FileNotFound, InvalidOption, StorageError
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
    return submit(JobSpec(type="blob", payload=payload), TENANT, repo, queue, clock, SETTINGS, files=lambda: files).job


DAY_S = 86_400


@pytest.mark.parametrize(
    ("size", "days_ahead", "accepted"),
    [
        pytest.param(INLINE_MAX * 2, max_schedule_days(30), True, id="offloaded-within-its-lifetime"),
        pytest.param(INLINE_MAX * 2, max_schedule_days(30) + 1, False, id="offloaded-beyond-its-lifetime"),
        pytest.param(INLINE_MAX * 2, 365, False, id="offloaded-a-year-ahead"),
        pytest.param(INLINE_MAX, 365, True, id="inline-a-year-ahead"),
    ],
)
def test_a_job_is_never_scheduled_past_the_expiry_of_its_offloaded_payload(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
    size: int,
    days_ahead: int,
    accepted: bool,
) -> None:
    # Given a payload kept in the files bucket for 30 days (an inline one lives on the record)
    spec = JobSpec(type="blob", payload=_payload(size), run_at_ms=clock() + days_ahead * DAY_S * 1000)
    # When the job is scheduled that far ahead
    if accepted:
        job = submit(spec, TENANT, repo, queue, clock, SETTINGS, files=lambda: files).job
        # Then it is accepted
        assert repo.get(TENANT, job.id) is not None
        return
    with pytest.raises(InvalidOption) as refused:
        submit(spec, TENANT, repo, queue, clock, SETTINGS, files=lambda: files)
    # Then it is refused, saying how far ahead it may be, and nothing was written anywhere
    assert refused.value.code == "INVALID_OPTION" and refused.value.status_code == 400
    assert refused.value.details["maxDaysAhead"] == max_schedule_days(30)
    assert files.objects == {} and repo.writes == 0 and queue.sends == []


def test_a_payload_up_to_the_inline_limit_stays_on_the_record_and_s3_is_never_built(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a payload of exactly the inline limit, and a store that must not be asked for
    payload = _payload(INLINE_MAX)

    def no_store() -> InMemoryFileStore:
        raise AssertionError("S3 is not needed for a small payload")

    # When it is enqueued
    job = submit(JobSpec(type="blob", payload=payload), TENANT, repo, queue, clock, SETTINGS, files=no_store).job
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


def _s3_answering_get_object(stub_error: tuple[str, int] | None, key: str) -> tuple[Any, Stubber]:
    """A real S3 client whose GetObject of ``key`` answers what AWS answers (the request is checked by the model)."""
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stub = Stubber(client)
    if stub_error is not None:
        code, status = stub_error
        stub.add_client_error(
            "get_object",
            service_error_code=code,
            service_message="Access Denied" if status == 403 else "The specified key does not exist.",
            http_status_code=status,
            expected_params={"Bucket": "jobs-files", "Key": key},
        )
    return client, stub


@pytest.mark.parametrize(
    "aws_answer",
    [
        pytest.param(("AccessDenied", 403), id="no-ListBucket-grant-403"),
        pytest.param(("NoSuchKey", 404), id="with-ListBucket-grant-404"),
    ],
)
def test_an_expired_payload_is_missing_whether_s3_answers_403_or_404(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    files: InMemoryFileStore,
    blob_type: tuple[str, list[dict[str, Any]]],
    aws_answer: tuple[str, int],
) -> None:
    # Given an offloaded job whose object has expired, read by a role without s3:ListBucket (as the functions' are):
    # AWS then answers GetObject 403 AccessDenied rather than 404 NoSuchKey
    job = _enqueue(_payload(INLINE_MAX * 2), repo, queue, clock, files)
    stored = repo.get(TENANT, job.id)
    assert stored is not None and stored.payload_ref is not None
    client, stub = _s3_answering_get_object(aws_answer, stored.payload_ref)
    s3_files = S3FileStore(client, "jobs-files")
    # When the job is delivered
    with stub:
        outcome = MessageConsumer(
            repo=repo, queue=queue, clock=clock, settings=ConsumerSettings(1, 4), files=lambda: s3_files
        ).handle(message_body(job), "arn", "receipt", 30_000)
        stub.assert_no_pending_responses()
    # Then it fails at once, saying the payload is gone, instead of retrying to exhaustion
    assert outcome is Outcome.FAILED
    failed = repo.get(TENANT, job.id)
    assert failed is not None and failed.status == JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and "payload is gone" in failed.error
    # And GET /jobs/{id} shows the placeholder (a 200), not a storage error (a 503)
    client, stub = _s3_answering_get_object(aws_answer, stored.payload_ref)
    with stub:
        assert with_full_payload(failed, S3FileStore(client, "jobs-files")).payload == placeholder(
            _size(_payload(INLINE_MAX * 2))
        )


def test_access_denied_outside_the_payloads_prefix_stays_a_storage_error() -> None:
    # Given a key the functions do not own, answered 403 by S3
    client, stub = _s3_answering_get_object(("AccessDenied", 403), "uploads/tenant-a/photo.png")
    # When it is read, Then the denial is reported as such (a missing grant must not pass for a missing file)
    with stub, pytest.raises(StorageError) as raised:
        S3FileStore(client, "jobs-files").get_bytes("uploads/tenant-a/photo.png")
    assert not isinstance(raised.value, FileNotFound)
