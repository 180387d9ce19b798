"""Idempotency keys on enqueue: the same key and request give the first job; another request is a conflict."""

from __future__ import annotations

import pytest

from functions.logic.enqueue import EnqueueSettings, parse_job_spec, request_fingerprint, submit
from functions.models.errors import IdempotencyConflict, InvalidOption
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue

SETTINGS = EnqueueSettings(pending_grace_seconds=120, release_ahead_seconds=120, idempotency_ttl_seconds=86_400)
BODY = {"type": "simulate", "payload": {"target": "a.png"}, "idempotencyKey": "order-42"}


def test_the_same_key_and_body_return_the_first_job_without_a_second_message(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job accepted with a key
    first = submit(parse_job_spec(BODY, clock()), "t", repo, queue, clock, SETTINGS)
    clock.advance(seconds=3600)

    # When the same request comes again an hour later
    again = submit(parse_job_spec(dict(BODY), clock()), "t", repo, queue, clock, SETTINGS)

    # Then it is the first job, flagged as a replay, and nothing new was stored or sent
    assert again.replayed and not first.replayed
    assert again.job.id == first.job.id
    assert len(repo.all_jobs()) == 1
    assert queue.sent_job_ids() == [first.job.id]
    assert first.job.idempotency_key == "order-42"


def test_the_same_key_with_another_body_is_a_conflict_naming_the_first_job(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    first = submit(parse_job_spec(BODY, clock()), "t", repo, queue, clock, SETTINGS)
    other = {**BODY, "payload": {"target": "b.png"}}

    with pytest.raises(IdempotencyConflict) as raised:
        submit(parse_job_spec(other, clock()), "t", repo, queue, clock, SETTINGS)

    assert raised.value.code == "IDEMPOTENCY_CONFLICT"
    assert raised.value.details == {"jobId": first.job.id}
    assert len(repo.all_jobs()) == 1


def test_a_key_is_free_again_after_its_lifetime(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    first = submit(parse_job_spec(BODY, clock()), "t", repo, queue, clock, SETTINGS)
    clock.advance(seconds=86_400 + 1)

    later = submit(parse_job_spec({**BODY, "priority": 9}, clock()), "t", repo, queue, clock, SETTINGS)

    assert not later.replayed and later.job.id != first.job.id


def test_keys_belong_to_their_tenant(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> None:
    a = submit(parse_job_spec(BODY, clock()), "tenant-a", repo, queue, clock, SETTINGS)
    b = submit(parse_job_spec(BODY, clock()), "tenant-b", repo, queue, clock, SETTINGS)
    assert not b.replayed and a.job.id != b.job.id


def test_the_header_and_the_field_are_one_key(clock: FakeClock) -> None:
    body = {"type": "simulate", "payload": {"target": "a.png"}}
    assert parse_job_spec(body, clock(), "k-1").idempotency_key == "k-1"
    assert parse_job_spec({**body, "idempotencyKey": "k-1"}, clock(), "k-1").idempotency_key == "k-1"
    # Two different keys in one request conflict (409), as a key reused with another request does
    with pytest.raises(IdempotencyConflict, match="differ"):
        parse_job_spec({**body, "idempotencyKey": "k-1"}, clock(), "k-2")


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "é", 42])
def test_bad_keys_are_invalid_options(clock: FakeClock, key: object) -> None:
    with pytest.raises(InvalidOption, match="idempotencyKey"):
        parse_job_spec({"type": "simulate", "payload": {"target": "a"}, "idempotencyKey": key}, clock())


def test_the_fingerprint_ignores_key_order_and_the_key_itself() -> None:
    a = request_fingerprint({"type": "simulate", "payload": {"x": 1, "y": 2}, "idempotencyKey": "k"})
    b = request_fingerprint({"payload": {"y": 2, "x": 1}, "type": "simulate"})
    c = request_fingerprint({"payload": {"y": 2, "x": 1}, "type": "simulate", "priority": 9})
    assert a == b != c
