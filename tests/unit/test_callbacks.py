"""Completion callbacks: arming on a final status, delivery (signed, retried, given up), duplicates, races."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from functions.adapters.net import BlockedAddress, ConnectionFailed, NetError, Response
from functions.logic import callbacks
from functions.logic.callbacks import CallbackDeliverer
from functions.logic.consume import ConsumerSettings, MessageConsumer, Outcome
from functions.logic.job_types.webhook import verify_signature
from functions.models.errors import JobDeferred
from functions.models.job import Callback, CallbackStatus, Job, JobMessage, JobStatus
from functions.settings import Settings
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, make_job

SECRET = "tenant-secret"
URL = "https://hooks.example.com/done"
GRACE = 120
ARN = "arn:aws:sqs:us-east-1:000000000000:jobs"
SETTINGS = Settings(
    callback_max_attempts=3, backoff_base_seconds=2.0, backoff_cap_seconds=300.0, pending_grace_seconds=GRACE
)


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    max_redirects: int


@dataclass
class FakeHttp:
    """Answers each request with the next outcome: a status code, or a ``NetError`` to raise."""

    outcomes: list[int | NetError] = field(default_factory=list)
    requests: list[Sent] = field(default_factory=list)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        max_redirects: int = 5,
        truncate: bool = False,
    ) -> Response:
        self.requests.append(Sent(method, url, dict(headers or {}), body or b"", max_redirects))
        outcome = self.outcomes.pop(0) if self.outcomes else 200
        if isinstance(outcome, NetError):
            raise outcome
        location = {"location": "https://elsewhere.example.com/"} if 300 <= outcome < 400 else {}
        return Response(outcome, "Reason", location, b"nope" if outcome >= 300 else b"ok", url)


def final_job(
    repo: InMemoryJobsRepository, clock: FakeClock, status: JobStatus = JobStatus.COMPLETED, url: str = URL
) -> Job:
    """A job made final the way the consumer does it: armed in the final write."""
    job = make_job(clock, status=JobStatus.PROCESSING, attempts=1, callback=Callback(url=url))
    repo.create(job)
    final = job.model_copy(update={"status": status, "result": {"ok": True}, "completed_at": clock.iso()})
    repo.save(job, callbacks.arm(final, clock(), GRACE))
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


def message(job: Job) -> JobMessage:
    return JobMessage(tenant=job.tenant, jobId=job.id, kind="callback")


def reload(repo: InMemoryJobsRepository, job: Job) -> Job:
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


def callback_of(repo: InMemoryJobsRepository, job: Job) -> Callback:
    callback = reload(repo, job).callback
    assert callback is not None
    return callback


@pytest.fixture
def http() -> FakeHttp:
    return FakeHttp()


@pytest.fixture
def deliverer(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, http: FakeHttp
) -> CallbackDeliverer:
    return CallbackDeliverer(repo, queue, SETTINGS, clock, secret_for=lambda tenant: SECRET, http=http)


# --- arming ---


def test_arm_makes_the_callback_pending_for_the_final_version_with_a_sweep_mark(clock: FakeClock) -> None:
    # Given a job with a callback whose previous delivery was recorded (a retried job)
    old = Callback(url=URL, status=CallbackStatus.FAILED, attempts=5, last_error="boom", for_version=3)
    job = make_job(clock, status=JobStatus.FAILED, version=7, callback=old, next_attempt_at_ms=clock() + 5000)
    # When it is armed for its final write
    armed = callbacks.arm(job, clock(), GRACE)
    # Then the callback is pending from scratch, for the version that write creates, with a mark a grace later
    assert armed.callback == Callback(url=URL, status=CallbackStatus.PENDING, attempts=0, for_version=8)
    assert armed.sweep_at == clock.iso(GRACE)
    assert armed.next_attempt_at_ms is None


def test_arm_leaves_a_job_without_callback_alone(clock: FakeClock) -> None:
    job = make_job(clock, status=JobStatus.COMPLETED)
    assert callbacks.arm(job, clock(), GRACE) is job


def test_a_final_job_in_the_consumer_sends_one_callback_message(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a pending job with a callback URL, run by the consumer
    job = make_job(clock, job_type="message", payload={"message": "hi"}, callback=Callback(url=URL))
    repo.create(job)
    consumer = MessageConsumer(repo, queue, clock, ConsumerSettings(2, 300), job_settings=SETTINGS)
    body = JobMessage(tenant=job.tenant, jobId=job.id).to_body()
    # When it completes
    assert consumer.handle(body, ARN, "rh", 30_000) == Outcome.COMPLETED
    # Then its callback is pending and exactly one callback message went out
    assert callback_of(repo, job).status == CallbackStatus.PENDING
    assert [(s.message.job_id, s.message.kind) for s in queue.sends] == [(job.id, "callback")]


# --- delivery ---


def test_a_delivered_callback_posts_the_signed_record_and_records_it(
    repo: InMemoryJobsRepository, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a completed job whose callback is pending
    job = final_job(repo, clock)
    clock.advance(1)
    # When its callback message is delivered
    assert deliverer.deliver(message(job), ARN, "rh") is None
    # Then one POST went to the URL, without following redirects, with the record as its body
    [sent] = http.requests
    assert (sent.method, sent.url, sent.max_redirects) == ("POST", URL, 0)
    assert json.loads(sent.body) == job.to_api()
    # And it is signed like webhook-delivery, with the tenant's secret
    assert verify_signature(SECRET, sent.headers["X-Jobs-Signature"], sent.body, now=clock() / 1000)
    assert sent.headers["X-Jobs-Timestamp"] == str(clock() // 1000)
    assert sent.headers["Idempotency-Key"] == f"{job.id}:{job.version}"
    assert sent.headers["X-Jobs-Attempt"] == "1"
    assert sent.headers["Content-Type"] == "application/json"
    # And the record says delivered, with no sweep mark left; the job itself is unchanged
    stored = reload(repo, job)
    assert stored.callback == Callback(
        url=URL, status=CallbackStatus.DELIVERED, attempts=1, delivered_at=clock.iso(), for_version=job.version
    )
    assert stored.sweep_at is None
    assert (stored.status, stored.result, stored.updated_at) == (job.status, job.result, job.updated_at)


def test_a_second_copy_after_delivery_sends_nothing(
    repo: InMemoryJobsRepository, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a delivered callback
    job = final_job(repo, clock)
    deliverer.deliver(message(job), ARN, "rh")
    writes = repo.writes
    # When a duplicate callback message arrives
    deliverer.deliver(message(job), ARN, "rh2")
    # Then nothing is posted or written again
    assert len(http.requests) == 1
    assert repo.writes == writes


@pytest.mark.parametrize("failure", [503, 429, 408, ConnectionFailed("reset")])
def test_a_transient_failure_is_recorded_and_retried_with_backoff(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    http: FakeHttp,
    deliverer: CallbackDeliverer,
    failure: int | NetError,
) -> None:
    # Given a pending callback whose receiver fails transiently
    job = final_job(repo, clock)
    http.outcomes = [failure]
    # When the message is delivered
    with pytest.raises(JobDeferred):
        deliverer.deliver(message(job), ARN, "rh")
    # Then the attempt and its error are recorded, the callback still pending
    callback = callback_of(repo, job)
    assert (callback.status, callback.attempts) == (CallbackStatus.PENDING, 1)
    assert callback.last_error
    # And the message comes back after the backoff (1-2 s for a first retry with base 2 s)
    [deferred] = queue.defers
    assert (deferred.source_arn, deferred.receipt_handle) == (ARN, "rh")
    assert 1 <= deferred.seconds <= 2
    # And the sweep mark is a grace period past that, the next attempt time recorded
    stored = reload(repo, job)
    assert stored.next_attempt_at_ms == clock() + deferred.seconds * 1000
    assert stored.sweep_at == clock.iso(deferred.seconds + GRACE)


def test_retried_then_delivered(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a receiver that fails once, then accepts
    job = final_job(repo, clock)
    http.outcomes = [500, 204]
    with pytest.raises(JobDeferred):
        deliverer.deliver(message(job), ARN, "rh")
    # When the message comes back when due
    clock.advance(queue.defers[0].seconds)
    deliverer.deliver(message(job), ARN, "rh")
    # Then the second attempt is delivered, with the same idempotency key and the next attempt number
    assert [r.headers["X-Jobs-Attempt"] for r in http.requests] == ["1", "2"]
    assert len({r.headers["Idempotency-Key"] for r in http.requests}) == 1
    callback = callback_of(repo, job)
    assert (callback.status, callback.attempts, callback.last_error) == (CallbackStatus.DELIVERED, 2, None)
    assert reload(repo, job).sweep_at is None
    assert reload(repo, job).next_attempt_at_ms is None


def test_failed_after_the_maximum_attempts(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a receiver that always answers 503 (and at most 3 attempts)
    job = final_job(repo, clock)
    http.outcomes = [503, 503, 503, 503]
    # When each attempt's message comes back when due
    for _ in range(SETTINGS.callback_max_attempts - 1):
        with pytest.raises(JobDeferred):
            deliverer.deliver(message(job), ARN, "rh")
        clock.advance(queue.defers[-1].seconds)
    deliverer.deliver(message(job), ARN, "rh")
    # Then after the third attempt the callback has failed, with the last error, and nothing is left to sweep
    callback = callback_of(repo, job)
    assert (callback.status, callback.attempts) == (CallbackStatus.FAILED, 3)
    assert callback.last_error is not None and "503" in callback.last_error
    assert reload(repo, job).sweep_at is None
    assert len(http.requests) == 3 and len(queue.defers) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (404, "HTTP 404"),
        (400, "HTTP 400"),
        (302, "redirects are not followed"),
        (BlockedAddress("refused to connect to 10.0.0.1: private address"), "private address"),
    ],
)
def test_a_refused_address_or_a_client_error_fails_at_once(
    repo: InMemoryJobsRepository,
    queue: RecordingQueue,
    clock: FakeClock,
    http: FakeHttp,
    deliverer: CallbackDeliverer,
    failure: int | NetError,
    error: str,
) -> None:
    job = final_job(repo, clock)
    http.outcomes = [failure]
    deliverer.deliver(message(job), ARN, "rh")
    callback = callback_of(repo, job)
    assert (callback.status, callback.attempts) == (CallbackStatus.FAILED, 1)
    assert callback.last_error is not None and error in callback.last_error
    assert queue.defers == []


def test_a_copy_arriving_before_the_next_attempt_is_due_is_dropped(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a callback waiting for its second attempt (due in 1-2 s)
    job = final_job(repo, clock)
    http.outcomes = [503]
    with pytest.raises(JobDeferred):
        deliverer.deliver(message(job), ARN, "rh")
    writes = repo.writes
    # When another copy of its message arrives now
    deliverer.deliver(message(job), ARN, "copy")
    # Then it is dropped: no POST, no write, no defer
    assert len(http.requests) == 1
    assert repo.writes == writes
    assert len(queue.defers) == 1


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda job: job.model_copy(update={"callback": None}), id="no callback"),
        pytest.param(lambda job: job.model_copy(update={"status": JobStatus.PENDING}), id="job not final"),
        pytest.param(
            lambda job: job.model_copy(update={"callback": Callback(url=URL)}),
            id="callback reset by a retry",
        ),
    ],
)
def test_a_message_for_a_callback_that_is_not_pending_is_dropped(
    repo: InMemoryJobsRepository,
    clock: FakeClock,
    http: FakeHttp,
    deliverer: CallbackDeliverer,
    setup: Callable[[Job], Job],
) -> None:
    job = final_job(repo, clock)
    repo.save(job, setup(job))
    deliverer.deliver(message(job), ARN, "rh")
    assert http.requests == []


def test_a_message_for_an_unknown_job_is_dropped(
    clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    deliverer.deliver(JobMessage(tenant="t", jobId="missing", kind="callback"), ARN, "rh")
    assert http.requests == []


def test_a_concurrent_write_during_the_post_is_merged_on_the_fresh_record(
    repo: InMemoryJobsRepository, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given another writer touching the record (the sweeper moving its mark) while the POST is in flight
    job = final_job(repo, clock)
    repo.before_next_save = lambda: repo.touch(job.tenant, job.id)
    # When the delivery is recorded
    deliverer.deliver(message(job), ARN, "rh")
    # Then it is recorded on the fresh record, after one POST only
    assert len(http.requests) == 1
    assert callback_of(repo, job).status == CallbackStatus.DELIVERED


def test_a_job_retried_and_final_again_during_the_post_is_left_to_its_own_message(
    repo: InMemoryJobsRepository, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    # Given a job that, while its callback is being posted, is retried and becomes final again (re-armed)
    job = final_job(repo, clock)

    def retried_and_final_again() -> None:
        current = reload(repo, job)
        again = callbacks.arm(callbacks.reset(current).model_copy(update={"status": JobStatus.FAILED}), clock(), GRACE)
        repo.save(current, again)

    repo.before_next_save = retried_and_final_again
    # When the first delivery is recorded
    deliverer.deliver(message(job), ARN, "rh")
    # Then it does not mark the new final state's callback as delivered
    callback = callback_of(repo, job)
    assert (callback.status, callback.attempts) == (CallbackStatus.PENDING, 0)
    assert callback.for_version == job.version + 1


def test_the_body_is_the_record_as_the_api_shows_it_with_the_callback_pending(
    repo: InMemoryJobsRepository, clock: FakeClock, http: FakeHttp, deliverer: CallbackDeliverer
) -> None:
    job = final_job(repo, clock, status=JobStatus.FAILED)
    deliverer.deliver(message(job), ARN, "rh")
    body = json.loads(http.requests[0].body)
    assert (body["id"], body["status"], body["result"]) == (job.id, "failed", {"ok": True})
    assert body["callback"] == {"url": URL, "status": "pending", "attempts": 0}
    assert "tenant" not in body and "version" not in body


def test_backoff_grows_with_the_attempts(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, http: FakeHttp
) -> None:
    # Given 5 attempts allowed and a receiver that is down
    settings = Settings(callback_max_attempts=5, backoff_base_seconds=10.0, backoff_cap_seconds=300.0)
    deliverer = CallbackDeliverer(repo, queue, settings, clock, secret_for=lambda t: SECRET, http=http)
    job = final_job(repo, clock)
    http.outcomes = [503] * 4
    random.seed(1)
    for _ in range(4):
        with pytest.raises(JobDeferred):
            deliverer.deliver(message(job), ARN, "rh")
        clock.advance(queue.defers[-1].seconds)
    # Then each wait is within the equal-jitter bounds of base * 2^(n-1)
    for n, deferred in enumerate(queue.defers, start=1):
        ceiling = min(300.0, 10.0 * 2 ** (n - 1))
        assert ceiling / 2 <= deferred.seconds <= ceiling
