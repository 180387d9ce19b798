"""The shared SQS worker (``jobs worker``'s core) against moto: the real consumer, heartbeats, shutdown, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobsctl.runner import MissingSettings, WorkerOptions, build_worker
from jobsctl.worker import SqsWorker
from tests.integration.harness import Service, failing_job, ok_job
from tests.waiting import wait_until

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class Queue:
    url: str
    arn: str


@dataclass
class Calls:
    """What a test handler saw: record bodies in order, start/end times per body, and the most running at once."""

    bodies: list[str] = field(default_factory=list)
    started: dict[str, list[float]] = field(default_factory=dict)
    ended: dict[str, list[float]] = field(default_factory=dict)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, event: dict[str, Any]) -> list[str]:
        bodies = [record["body"] for record in event["Records"]]
        with self.lock:
            self.bodies.extend(bodies)
            for body in bodies:
                self.started.setdefault(body, []).append(time.monotonic())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        return bodies

    def leave(self, bodies: list[str]) -> None:
        with self.lock:
            self.active -= 1
            for body in bodies:
                self.ended.setdefault(body, []).append(time.monotonic())


@pytest.fixture
def make_queue(service: Service) -> Callable[..., Queue]:
    created = 0

    def make(visibility_timeout: int = 30) -> Queue:
        nonlocal created
        created += 1
        url = service.sqs.create_queue(
            QueueName=f"worker-queue-{created}", Attributes={"VisibilityTimeout": str(visibility_timeout)}
        )["QueueUrl"]
        arn = service.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Queue(url, arn)

    return make


@pytest.fixture
def workers() -> Iterator[list[SqsWorker]]:
    started: list[SqsWorker] = []
    yield started
    for worker in started:
        worker.shutdown(5)


def start_worker(
    registry: list[SqsWorker], handler: Handler, queue: Queue, *, concurrency: int = 1, batch_size: int = 1, **kw: Any
) -> SqsWorker:
    worker = SqsWorker(
        handler,
        queue.url,
        queue.arn,
        batch_size=batch_size,
        concurrency=concurrency,
        timeout_seconds=kw.pop("timeout_seconds", 30),
        function_name="test-worker",
        wait_seconds=1,
        invoke_size=1,
        **kw,
    )
    registry.append(worker)
    worker.start()
    return worker


def send(service: Service, queue: Queue, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        service.sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)


def visible_now(service: Service, url: str) -> list[str]:
    """The bodies receivable right now (received with visibility 0, so this look changes nothing)."""
    seen: dict[str, str] = {}
    for _ in range(3):
        response = service.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        seen.update({m["MessageId"]: m["Body"] for m in response.get("Messages", [])})
    return sorted(seen.values())


def test_the_real_consumer_completes_one_job_and_retries_then_dead_letters_the_other(service: Service) -> None:
    # Given a job that succeeds and one that fails every attempt (2 attempts), both queued
    ok = service.create_job(ok_job())
    bad = service.create_job(failing_job(max_attempts=2))

    # When the worker `jobs worker` builds runs the deployed consumer handler against the queue
    worker = build_worker(
        dict(service.settings.to_env()), WorkerOptions(concurrency=2, batch_size=1, wait_seconds=1), target={}
    )
    worker.start()
    try:
        wait_until(
            lambda: service.job(ok["id"])["status"] == "completed" and service.job(bad["id"])["status"] == "failed",
            20,
            "one job completes and the other fails",
        )
    finally:
        result = worker.shutdown(5)

    # Then the good one completed at its first attempt; the bad one was retried with backoff, then failed
    assert service.job(ok["id"])["attempts"] == 1
    history = [(h["status"], h.get("attempt")) for h in service.job(bad["id"])["history"]]
    assert history == [("pending", None), ("processing", 1), ("retrying", 1), ("processing", 2), ("failed", 2)]
    # and its message was moved to the DLQ by the consumer, the failure left to its visibility in between,
    # the successes deleted: the job queue is empty
    dead = service.dead_letters(1)
    assert json.loads(dead[0]["Body"])["jobId"] == bad["id"]
    wait_until(lambda: service.queue_total(service.queue_url) == 0, 5, "the job queue is empty")
    assert result == {"released": 0, "unfinished": 0}


def test_a_failure_reported_by_the_handler_stays_in_the_queue_and_successes_are_deleted(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given a handler that reports "b" as failed, on a queue with a 2 s visibility timeout
    queue = make_queue(visibility_timeout=2)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        calls.leave(bodies)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "b"]}

    # When the worker consumes a, b and c
    send(service, queue, ["a", "b", "c"])
    worker = start_worker(workers, handler, queue, batch_size=3)
    wait_until(lambda: sorted(set(calls.bodies)) == ["a", "b", "c"], 5, "all three are handled")
    worker.shutdown(5)

    # Then a and c were deleted, and b is still there (invisible until its visibility timeout ends)
    assert service.queue_total(queue.url) == 1
    wait_until(lambda: visible_now(service, queue.url) == ["b"], 5, "b becomes visible again")


def test_heartbeats_keep_a_slow_job_invisible_beyond_the_visibility_timeout(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given a queue whose visibility timeout is 1 s and a job that takes 3 s, with two slots free to take it
    queue = make_queue(visibility_timeout=1)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        time.sleep(3)
        calls.leave(bodies)
        return {"batchItemFailures": []}

    # When a heartbeating worker runs it
    send(service, queue, ["slow"])
    worker = start_worker(workers, handler, queue, concurrency=2, visibility_timeout=1)
    wait_until(lambda: calls.bodies == ["slow"], 5, "the job starts")
    during = []
    while "slow" not in calls.ended:
        during.extend(visible_now(service, queue.url))
        time.sleep(0.2)
    worker.shutdown(5)

    # Then nobody could receive it while it ran (3x the visibility timeout), it ran once, and it was deleted
    assert during == []
    assert calls.bodies == ["slow"]
    assert worker.heartbeats >= 3
    assert service.queue_total(queue.url) == 0


def test_without_heartbeats_the_same_slow_job_is_delivered_twice(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given the same queue and job, but a worker that does not heartbeat (what the previous test guards against)
    queue = make_queue(visibility_timeout=1)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        time.sleep(2.5)
        calls.leave(bodies)
        return {"batchItemFailures": []}

    # When it runs
    send(service, queue, ["slow"])
    worker = start_worker(workers, handler, queue, concurrency=2, visibility_timeout=None)
    wait_until(lambda: len(calls.bodies) >= 2, 6, "the job is handed out a second time")
    worker.shutdown(5)

    # Then the second slot received it again while the first still ran it
    assert calls.bodies[:2] == ["slow", "slow"]
    assert calls.max_active == 2


def test_heartbeats_leave_alone_a_message_whose_visibility_the_handler_set(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given a handler that defers its message by 1 s (as the consumer does for a backoff), then keeps working
    # for 1.5 s while heartbeats (every second, to 3 s) run, and reports it failed; the second delivery succeeds
    queue = make_queue(visibility_timeout=3)
    calls = Calls()
    holder: list[SqsWorker] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        record = event["Records"][0]
        if len(calls.started["retry-me"]) == 1:
            holder[0].note_visibility_changed(record["receiptHandle"])
            service.sqs.change_message_visibility(
                QueueUrl=queue.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=1
            )
            time.sleep(1.5)
            calls.leave(bodies)
            return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        calls.leave(bodies)
        return {"batchItemFailures": []}

    # When the worker runs it
    send(service, queue, ["retry-me"])
    holder.append(start_worker(workers, handler, queue, visibility_timeout=3))
    wait_until(lambda: len(calls.started.get("retry-me", [])) == 2, 6, "the message is delivered again")

    # Then it came back as soon as the handler's deferral allowed, not a heartbeat's 3 s later
    again = calls.started["retry-me"][1] - calls.ended["retry-me"][0]
    assert again < 1.0, f"redelivered {again:.2f}s after the first invocation ended"


def test_shutdown_finishes_the_job_in_flight_and_releases_the_unstarted_messages_at_once(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given one slot holding a batch of 5 received messages (visibility 30 s) and running the first, slowly
    queue = make_queue(visibility_timeout=30)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        time.sleep(0.8)
        calls.leave(bodies)
        return {"batchItemFailures": []}

    send(service, queue, [f"m{i}" for i in range(5)])
    worker = start_worker(workers, handler, queue, batch_size=5, visibility_timeout=30)
    wait_until(lambda: len(calls.bodies) == 1, 5, "the first job starts")
    wait_until(lambda: worker.held_count() == 5, 5, "the slot holds the whole batch")

    # When it is shut down with a grace period longer than the job
    began = time.monotonic()
    result = worker.shutdown(grace_seconds=5)
    elapsed = time.monotonic() - began

    # Then the running job finished and was deleted, the other four were never run and are visible again now
    assert elapsed < 2.0
    (done,) = calls.bodies
    assert done in calls.ended
    assert visible_now(service, queue.url) == sorted({f"m{i}" for i in range(5)} - {done})
    assert service.queue_total(queue.url) == 4
    assert worker.released == 4
    assert result == {"released": 0, "unfinished": 0}  # the slot gave them back itself, within the grace


def test_a_job_still_running_when_the_grace_period_ends_comes_back_when_its_lease_ends(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given a job that runs for 4 s under a 2 s lease (the invocation timeout), on a 30 s visibility queue
    queue = make_queue(visibility_timeout=30)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies = calls.enter(event)
        time.sleep(4)
        calls.leave(bodies)
        return {"batchItemFailures": []}

    send(service, queue, ["long"])
    worker = start_worker(workers, handler, queue, visibility_timeout=30, timeout_seconds=2)
    wait_until(lambda: calls.bodies == ["long"], 5, "the job starts")

    # When the worker is shut down with a 0.5 s grace period
    began = time.monotonic()
    result = worker.shutdown(grace_seconds=0.5)

    # Then shutdown returned after the grace period, reporting it unfinished; the message is hidden until the
    # attempt's lease has run out (a redelivery then records the interrupted attempt), not for 30 s
    assert time.monotonic() - began < 1.5
    assert result == {"released": 0, "unfinished": 1}
    assert visible_now(service, queue.url) == []
    wait_until(lambda: visible_now(service, queue.url) == ["long"], 4, "the message is visible again")
    assert time.monotonic() - began < 4


def test_four_slots_process_twenty_messages_at_once_without_losing_or_repeating_one(
    service: Service, make_queue: Any, workers: list[SqsWorker]
) -> None:
    # Given 20 messages and a handler taking 0.2 s each
    queue = make_queue(visibility_timeout=30)
    bodies = [f"message-{i}" for i in range(20)]
    send(service, queue, bodies)
    calls = Calls()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen = calls.enter(event)
        time.sleep(0.2)
        calls.leave(seen)
        return {"batchItemFailures": []}

    # When a worker with concurrency 4 consumes them
    worker = start_worker(workers, handler, queue, concurrency=4, visibility_timeout=30)
    wait_until(lambda: service.queue_total(queue.url) == 0, 15, "the queue is empty")
    worker.shutdown(5)

    # Then each was handled exactly once, one per invocation, four at a time
    assert sorted(calls.bodies) == sorted(bodies)
    assert calls.max_active == 4
    assert worker.invocations == 20


@pytest.mark.parametrize(
    ("lane", "options"),
    [("high", {"priority": 9}), ("ordered", {"groupId": "worker-group"})],
)
def test_a_worker_consumes_the_lane_it_is_given(service: Service, lane: str, options: dict[str, Any]) -> None:
    # Given a job of that lane, and a normal one that this worker must leave alone
    job = service.create_job(ok_job(**options))
    normal = service.create_job(ok_job())

    # When `jobs worker --lane <lane>` runs
    worker = build_worker(
        dict(service.settings.to_env()), WorkerOptions(concurrency=1, wait_seconds=1, lane=lane), target={}
    )
    worker.start()
    try:
        wait_until(lambda: service.job(job["id"])["status"] == "completed", 20, f"the {lane} job completes")
    finally:
        worker.shutdown(5)

    # Then its lane's job completed and the normal job still waits in the normal queue
    assert service.job(normal["id"])["status"] == "pending"
    assert worker.queue_url == getattr(service.settings, f"{lane}_queue_url")


def test_a_worker_refuses_a_lane_without_a_queue(service: Service) -> None:
    env = {**service.settings.to_env(), "JOBS_HIGH_QUEUE_URL": ""}
    with pytest.raises(MissingSettings, match="JOBS_HIGH_QUEUE_URL"):
        build_worker(env, WorkerOptions(lane="high"), target={})
