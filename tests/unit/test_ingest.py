"""Webhook ingest: size limit, signature (when the tenant has a secret), body and type checks, the job it enqueues."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.logic import ingest
from functions.logic.enqueue import EnqueueSettings
from functions.logic.job_types.webhook import signature_header
from functions.models.errors import ApiError, InvalidSignature
from functions.models.job import Job, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue

TENANT = "tenant-a"
SECRET = "whsec_test"
# Large enough to keep a 256 KiB webhook inline (the API offloads bigger payloads to S3).
SETTINGS = EnqueueSettings(pending_grace_seconds=120, release_ahead_seconds=900, payload_inline_max_bytes=400 * 1024)
BODY = json.dumps({"message": "invoice paid"}).encode()


def call(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    raw: bytes = BODY,
    *,
    type_name: str = "message",
    signature: str | None = None,
    secret: str | None = None,
    query: dict[str, str] | None = None,
) -> Job:
    return ingest.ingest(
        type_name,
        raw,
        tenant=TENANT,
        signature=signature,
        secret_for=lambda tenant: secret if tenant == TENANT else None,
        query=query or {},
        repo=repo,
        queue=queue,
        clock=clock,
        settings=SETTINGS,
    )


def test_a_webhook_without_a_configured_secret_becomes_a_queued_job(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a tenant without an ingest secret
    # When a JSON object is posted to /hooks/message
    job = call(repo, queue, clock)
    # Then a pending message job carries the body as its payload, stored and queued
    assert (job.type, job.status, job.payload, job.priority) == (
        "message",
        JobStatus.PENDING,
        {"message": "invoice paid"},
        5,
    )
    assert repo.get(TENANT, job.id) is not None
    assert queue.sent_job_ids() == [job.id]


def test_priority_comes_from_the_query(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    job = call(repo, queue, clock, query={"priority": "9"})
    assert job.priority == 9
    assert queue.sends[0].priority == 9


@pytest.mark.parametrize("query", [{"priority": "0"}, {"priority": "11"}, {"priority": "high"}, {"foo": "1"}])
def test_a_bad_query_is_invalid_query(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, query: dict[str, str]
) -> None:
    with pytest.raises(ApiError) as caught:
        call(repo, queue, clock, query=query)
    assert caught.value.code == "INVALID_QUERY"
    assert repo.all_jobs() == []


def test_a_correctly_signed_webhook_is_accepted_when_the_tenant_has_a_secret(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    header = signature_header(SECRET, clock() // 1000, BODY)
    job = call(repo, queue, clock, signature=header, secret=SECRET)
    assert job.payload == {"message": "invoice paid"}


def test_rotation_a_header_with_two_signatures_is_accepted_if_one_matches(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    t = clock() // 1000
    good = signature_header(SECRET, t, BODY).split("v1=")[1]
    job = call(repo, queue, clock, signature=f"t={t},v1={'0' * 64},v1={good}", secret=SECRET)
    assert job.status == JobStatus.PENDING


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda now: None, id="missing"),
        pytest.param(lambda now: "", id="empty"),
        pytest.param(lambda now: "v1=abc", id="malformed"),
        pytest.param(lambda now: signature_header("another-secret", now, BODY), id="wrong secret"),
        pytest.param(lambda now: signature_header(SECRET, now, BODY + b" "), id="other body"),
        pytest.param(lambda now: signature_header(SECRET, now - 301, BODY), id="stale"),
        pytest.param(lambda now: signature_header(SECRET, now + 301, BODY), id="from the future"),
    ],
)
def test_a_bad_signature_is_refused_before_anything_is_stored(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, make_header: Any
) -> None:
    with pytest.raises(InvalidSignature) as caught:
        call(repo, queue, clock, signature=make_header(clock() // 1000), secret=SECRET)
    assert (caught.value.status_code, caught.value.code) == (401, "INVALID_SIGNATURE")
    assert repo.all_jobs() == [] and queue.sends == []


def test_a_signature_within_the_tolerance_is_accepted(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    header = signature_header(SECRET, clock() // 1000 - 299, BODY)
    assert call(repo, queue, clock, signature=header, secret=SECRET).status == JobStatus.PENDING


def _body_of(size: int) -> bytes:
    """A webhook-delivery payload (its ``body`` takes any JSON) of exactly ``size`` bytes."""
    base = {"url": "https://example.com/", "body": ""}
    filler = size - len(json.dumps(base, separators=(",", ":")))
    raw = json.dumps({**base, "body": "x" * filler}, separators=(",", ":")).encode()
    assert len(raw) == size
    return raw


def test_a_body_of_256_kib_is_accepted(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    job = call(repo, queue, clock, _body_of(ingest.MAX_BODY_BYTES), type_name="webhook-delivery")
    assert len(job.payload["body"]) > 256_000


def test_a_body_over_256_kib_is_payload_too_large(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    with pytest.raises(ApiError) as caught:
        call(repo, queue, clock, _body_of(ingest.MAX_BODY_BYTES + 1), type_name="webhook-delivery")
    assert (caught.value.status_code, caught.value.code) == (413, "PAYLOAD_TOO_LARGE")
    assert repo.all_jobs() == []


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"[1,2]", b'"text"', b"42", b"null", b"{not json", b"\xff\xfe", b'{"a": NaN}']
)
def test_a_body_that_is_not_a_json_object_is_invalid_body(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, raw: bytes
) -> None:
    with pytest.raises(ApiError) as caught:
        call(repo, queue, clock, raw)
    assert (caught.value.status_code, caught.value.code) == (400, "INVALID_BODY")


def test_an_unknown_type_is_invalid_type(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    with pytest.raises(ApiError) as caught:
        call(repo, queue, clock, type_name="no-such-type")
    assert caught.value.code == "INVALID_TYPE"


def test_a_body_the_type_refuses_is_invalid_payload(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    with pytest.raises(ApiError) as caught:
        call(repo, queue, clock, json.dumps({"event": "invoice.paid"}).encode())
    assert caught.value.code == "INVALID_PAYLOAD"
    assert caught.value.details


def test_the_signature_is_checked_before_the_body(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # An unsigned request learns nothing about what the tenant's types accept
    with pytest.raises(InvalidSignature):
        call(repo, queue, clock, b"[not an object]", secret=SECRET)
