"""Chaos: 500 jobs while consumers crash at random points, messages arrive twice and copies overlap attempts.

Two consumers (each its own execution environment, as on Lambda) poll the moto queue. The test kills invocations
(a ``BaseException``, which Powertools' batch processor does not catch: the whole invocation dies and none of its
messages is deleted, as when Lambda times out or crashes) before and after the claim write, after the job's side
effect, before and after the outcome write; it sends extra copies of messages, some while the job is running. A
crashed invocation's messages come back once their visibility lapses, which, as on AWS, is after the attempt's
lease (the function timeout).

Then: every job is final, none is lost, every history is a path of allowed transitions, attempts never exceed
maxAttempts, the stats counters equal the records, and no side effect ran outside a counted attempt or after the
job's outcome was recorded.

The second test also loses messages behind the jobs' backs, as AWS does: the queue's redrive moves a message to
the DLQ once it was received a few times (crashes, lease waits and retries all count), and some messages are
deleted without being run. Only the sweeper, running alongside, can bring those jobs to an end (logic/sweep.py).
"""

from __future__ import annotations

import contextvars
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from functions.dal.jobs_repository import Claim, DynamoJobsRepository
from functions.handlers import runtime as runtime_module
from functions.handlers import sweeper
from functions.handlers.runtime import runtime
from functions.logic.job_types import JobContext, JobType, registry
from functions.logic.job_types.builtin import attempt_roll
from functions.models.errors import RetryableJobError
from functions.models.job import Job, JobMessage, JobStatus
from jobsctl.environments import fresh_handler
from local.lambda_context import LocalContext
from tests.integration.harness import TENANT_A, Service

JOBS = int(os.environ.get("CHAOS_JOBS", "500"))
SEED = int(os.environ.get("CHAOS_SEED", "20261123"))
CRASH_CHANCE = 0.015  # per injection point reached; five points per attempt
DUPLICATE_CHANCE = 0.1
LEASE_SECONDS = 2  # the consumer's timeout: an attempt's lease
VISIBILITY_AFTER_CRASH = LEASE_SECONDS + 1  # SQS visibility always outlasts the function timeout
DEADLINE_SECONDS = 240

ALLOWED = {
    (None, JobStatus.PENDING),
    (JobStatus.PENDING, JobStatus.PROCESSING),
    (JobStatus.PROCESSING, JobStatus.COMPLETED),
    (JobStatus.PROCESSING, JobStatus.RETRYING),
    (JobStatus.PROCESSING, JobStatus.FAILED),
    (JobStatus.RETRYING, JobStatus.PROCESSING),
    (JobStatus.RETRYING, JobStatus.FAILED),  # the last attempt died: recorded as failed on redelivery
}
# Losing messages: the redrive threshold of the test's queue, the chance that a received message is deleted unrun,
# and the sweeper's settings (an in-flight job is looked at this long after its lease or next attempt).
LOSSY_JOBS = int(os.environ.get("CHAOS_LOSSY_JOBS", "150"))
MAX_RECEIVE_COUNT = 3
DELETE_CHANCE = 0.05
IN_FLIGHT_GRACE_SECONDS = 4
PENDING_GRACE_SECONDS = 4
ORPHAN_GIVE_UP_SECONDS = 60


class Crash(BaseException):
    """The invocation dies here (not an ``Exception``: nothing in the handler may catch it)."""


class ChaosPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failure_rate: float = Field(default=0.3, alias="failureRate")


class Chaos:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        # Set by a consumer thread; a context variable, so the threads its batch's records run in see it too.
        self.consuming: contextvars.ContextVar[bool] = contextvars.ContextVar("consuming", default=False)
        self.crashes: Counter[str] = Counter()
        # job id -> [(attempt, the record's status and attempts when the effect ran)]
        self.effects: dict[str, list[tuple[int, JobStatus, int]]] = defaultdict(list)

    def maybe_crash(self, point: str) -> None:
        if not self.consuming.get():
            return  # only consumer invocations crash (the API and the test itself do not)
        with self.lock:
            hit = self.rng.random() < CRASH_CHANCE
            if hit:
                self.crashes[point] += 1
        if hit:
            raise Crash(point)

    def chance(self, probability: float) -> bool:
        with self.lock:
            return self.rng.random() < probability


@pytest.fixture
def chaos(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chaos]:
    chaos = Chaos(SEED)
    original_save = DynamoJobsRepository.save

    def chaotic_save(self: DynamoJobsRepository, before: Job, after: Job) -> None:
        kind = "claim" if after.status == JobStatus.PROCESSING and before.status != JobStatus.PROCESSING else "outcome"
        chaos.maybe_crash(f"before {kind} write")
        original_save(self, before, after)
        chaos.maybe_crash(f"after {kind} write")

    monkeypatch.setattr(DynamoJobsRepository, "save", chaotic_save)
    original_claim_pending = DynamoJobsRepository.claim_pending

    # A pending job's first attempt is claimed by one conditional update without a read (records.claim_pending),
    # not through save: the same two points around it, or most claims would never crash.
    def chaotic_claim_pending(self: DynamoJobsRepository, *args: Any, **kwargs: Any) -> Claim:
        chaos.maybe_crash("before claim write")
        claim = original_claim_pending(self, *args, **kwargs)
        if claim.claimed:
            chaos.maybe_crash("after claim write")
        return claim

    monkeypatch.setattr(DynamoJobsRepository, "claim_pending", chaotic_claim_pending)

    def effect(payload: ChaosPayload, ctx: JobContext) -> str:
        record = runtime().repo.get(ctx.tenant, ctx.job_id)
        assert record is not None
        with chaos.lock:
            chaos.effects[ctx.job_id].append((ctx.attempt, record.status, record.attempts))
        if chaos.chance(DUPLICATE_CHANCE / 2):
            # A copy arrives while this attempt runs (a sweeper re-send, an SQS duplicate).
            service.send_message_for(ctx.job_id)
        chaos.maybe_crash("after the side effect")
        if attempt_roll(ctx.job_id, ctx.attempt) < payload.failure_rate:
            raise RetryableJobError(f"chaos failure on attempt {ctx.attempt}")
        return f"effect of attempt {ctx.attempt}"

    monkeypatch.setitem(registry._REGISTRY, "chaos", JobType(name="chaos", payload_model=ChaosPayload, handler=effect))
    yield chaos


def consume(
    service: Service,
    chaos: Chaos,
    stop: threading.Event,
    errors: list[BaseException],
    lose: Callable[[dict[str, str]], bool] | None = None,
) -> None:
    handler = fresh_handler("functions.handlers.consumer")  # this consumer's own execution environment
    chaos.consuming.set(True)
    try:
        while not stop.is_set():
            messages = service.receive(max_messages=10, wait=1)
            if lose is not None:
                messages = [message for message in messages if not lose(message)]
            if not messages:
                continue
            event = {"Records": [service.records._record(message) for message in messages]}
            try:
                response = handler(event, LocalContext("consumer", LEASE_SECONDS))
            except Crash:
                # Nothing is deleted; the messages come back when their visibility lapses (after the lease).
                for message in messages:
                    _unless_moved_on(
                        service.sqs.change_message_visibility,
                        QueueUrl=service.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=VISIBILITY_AFTER_CRASH,
                    )
                continue
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    _unless_moved_on(
                        service.sqs.delete_message, QueueUrl=service.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
    except BaseException as exc:  # noqa: BLE001 - reported to the test thread
        errors.append(exc)


def _unless_moved_on(call: Callable[..., Any], **params: Any) -> None:
    """What the event source does with a batch's messages, unless the message moved on meanwhile: its visibility
    lapsed during a slow attempt and another consumer received it, or the redrive took it to the DLQ (its receipt
    handle is then stale, and Lambda's poller drops it the same way)."""
    try:
        call(**params)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
            raise


def run_until_final(
    service: Service,
    ids: list[str],
    threads: list[threading.Thread],
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    """Run ``threads`` until every job is final (or the deadline passes), then stop them; fail on their errors."""
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline and not errors:
            if all(job.status.is_final for job in records(service, ids)):
                break
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors


def records(service: Service, ids: list[str]) -> list[Job]:
    jobs = [service.repo.get(TENANT_A, job_id) for job_id in ids]
    assert all(job is not None for job in jobs), "a job record is missing"
    return [job for job in jobs if job is not None]


def test_every_job_ends_final_and_consistent_under_crashes_and_duplicates(service: Service, chaos: Chaos) -> None:
    # Given JOBS chaos jobs (30 % of attempts fail), a tenth of them with a duplicate message from the start
    ids: list[str] = []
    for _ in range(JOBS):
        status, job, _ = service.api("POST", "/jobs", {"type": "chaos", "payload": {}, "maxAttempts": 3})
        assert status == 202, job
        ids.append(job["id"])
        if chaos.chance(DUPLICATE_CHANCE):
            service.sqs.send_message(
                QueueUrl=service.queue_url, MessageBody=JobMessage(tenant=TENANT_A, jobId=job["id"]).to_body()
            )

    # When two crashing consumers work until every job is final
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=consume, args=(service, chaos, stop, errors)) for _ in range(2)]
    run_until_final(service, ids, threads, stop, errors)

    # Then every job is final: none lost, none stuck
    jobs = records(service, ids)
    stuck = Counter(job.status.value for job in jobs if not job.status.is_final)
    assert not stuck, f"not final after {DEADLINE_SECONDS}s: {stuck}; crashes: {dict(chaos.crashes)}"
    # And crashes really happened at every injection point
    assert set(chaos.crashes) == {
        "before claim write",
        "after claim write",
        "after the side effect",
        "before outcome write",
        "after outcome write",
    }, chaos.crashes

    for job in jobs:
        # And every history is a path through allowed transitions, with attempts within bounds
        previous: JobStatus | None = None
        for entry in job.history:
            assert (previous, entry.status) in ALLOWED, (job.id, [e.status.value for e in job.history])
            previous = entry.status
        assert 1 <= job.attempts <= job.max_attempts, job.id
        assert job.history[-1].status == job.status
        # And each side effect ran inside a counted attempt of a processing job, never after its outcome
        for attempt, status_then, attempts_then in chaos.effects[job.id]:
            assert status_then == JobStatus.PROCESSING and attempt == attempts_then <= job.max_attempts, job.id
        if job.status == JobStatus.COMPLETED:
            completing_attempt = job.history[-1].attempt
            assert all(attempt <= (completing_attempt or 0) for attempt, _, _ in chaos.effects[job.id]), job.id

    # And the stats counters agree with the records
    stats = service.stats()
    by_status = Counter(job.status.value for job in jobs)
    assert stats["enqueued"] == JOBS
    assert {name: stats[name] for name in ("completed", "failed")} == {
        "completed": by_status["completed"],
        "failed": by_status["failed"],
    }
    assert stats["pending"] == stats["processing"] == stats["retrying"] == 0


def test_every_job_ends_final_exactly_once_when_messages_are_lost_behind_its_back(
    service: Service, chaos: Chaos, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue whose redrive moves a message to the DLQ at its 4th receive, a sweeper looking at in-flight jobs
    # a few seconds after their lease or next attempt, and consumers that also delete some messages unrun
    service.sqs.set_queue_attributes(
        QueueUrl=service.queue_url,
        Attributes={
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{service.dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}'
        },
    )
    monkeypatch.setenv("JOBS_IN_FLIGHT_GRACE_SECONDS", str(IN_FLIGHT_GRACE_SECONDS))
    monkeypatch.setenv("JOBS_PENDING_GRACE_SECONDS", str(PENDING_GRACE_SECONDS))
    monkeypatch.setenv("JOBS_ORPHAN_GIVE_UP_SECONDS", str(ORPHAN_GIVE_UP_SECONDS))
    runtime_module.reset()
    deleted: Counter[str] = Counter()

    def delete_unrun(message: dict[str, str]) -> bool:
        if not chaos.chance(DELETE_CHANCE):
            return False
        service.sqs.delete_message(QueueUrl=service.queue_url, ReceiptHandle=message["ReceiptHandle"])
        deleted[JobMessage.model_validate_json(message["Body"]).job_id] += 1
        return True

    ids = []
    for _ in range(LOSSY_JOBS):
        status, job, _ = service.api("POST", "/jobs", {"type": "chaos", "payload": {}, "maxAttempts": 3})
        assert status == 202, job
        ids.append(job["id"])

    # When two crashing, message-losing consumers and the sweeper work until every job is final
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=consume, args=(service, chaos, stop, errors, delete_unrun)) for _ in range(2)]
    reports: list[dict[str, int]] = []

    def sweep_every_second() -> None:
        try:
            while not stop.wait(1):
                reports.append(sweeper.handler({}, LocalContext("sweeper", 60)))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    threads.append(threading.Thread(target=sweep_every_second))
    run_until_final(service, ids, threads, stop, errors)

    # Then every job is final
    jobs = records(service, ids)
    stuck = Counter(job.status.value for job in jobs if not job.status.is_final)
    assert not stuck, f"not final after {DEADLINE_SECONDS}s: {stuck}; crashes: {dict(chaos.crashes)}"
    # And messages really were lost both ways, and the sweeper really had jobs to bring back
    redriven = service.sqs.get_queue_attributes(QueueUrl=service.dlq_url, AttributeNames=["All"])["Attributes"]
    assert int(redriven["ApproximateNumberOfMessages"]) > 0, "no message reached the DLQ by its receive count"
    assert deleted and chaos.crashes, (deleted, chaos.crashes)
    assert sum(report["orphans_resent"] + report["orphans_failed"] for report in reports) > 0

    for job in jobs:
        # And every history is a path of allowed transitions, with one final entry, the last
        previous: JobStatus | None = None
        for entry in job.history:
            assert (previous, entry.status) in ALLOWED, (job.id, [e.status.value for e in job.history])
            previous = entry.status
        assert [entry.status.is_final for entry in job.history].count(True) == 1, job.id
        assert job.history[-1].status == job.status and job.sweep_at is None, job.id  # nothing left to sweep
        # And no attempt was claimed twice: each processing entry is the next attempt
        claimed = [entry.attempt for entry in job.history if entry.status == JobStatus.PROCESSING]
        assert claimed == list(range(1, len(claimed) + 1)) and job.attempts == len(claimed), job.id
        assert 1 <= job.attempts <= job.max_attempts, job.id
        # And each side effect ran inside a counted attempt of a processing job
        for attempt, status_then, attempts_then in chaos.effects[job.id]:
            assert status_then == JobStatus.PROCESSING and attempt == attempts_then <= job.max_attempts, job.id

    # And the counters agree with the records: each job was counted final once
    stats = service.stats()
    by_status = Counter(job.status.value for job in jobs)
    assert stats["enqueued"] == LOSSY_JOBS
    assert (stats["completed"], stats["failed"]) == (by_status["completed"], by_status["failed"])
    assert stats["pending"] == stats["processing"] == stats["retrying"] == 0
