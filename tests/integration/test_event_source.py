"""The local SQS event-source emulator against moto: partial batches, raised invocations, redrive, concurrency, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from local.event_source import SqsEventSource
from tests.integration.harness import Service
from tests.waiting import wait_until

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class EmulatedQueue:
    url: str
    arn: str
    dlq_url: str


@dataclass
class Recorder:
    """A handler's view of what it was given: every record body, per invocation and per thread."""

    batches: list[list[str]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(event)
            self.batches.append([record["body"] for record in event["Records"]])
            self.threads.add(threading.current_thread().name)
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def bodies(self) -> list[str]:
        with self.lock:
            return [body for batch in self.batches for body in batch]


@pytest.fixture
def make_queue(service: Service) -> Callable[..., EmulatedQueue]:
    """A queue of its own with a DLQ, a short visibility timeout and a small maxReceiveCount."""
    created = 0

    def make(visibility_timeout: int = 1, max_receive_count: int = 2) -> EmulatedQueue:
        nonlocal created
        created += 1
        sqs = service.sqs
        dlq_url = sqs.create_queue(QueueName=f"emulator-dlq-{created}")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
        url = sqs.create_queue(
            QueueName=f"emulator-queue-{created}",
            Attributes={"VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive},
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return EmulatedQueue(url=url, arn=arn, dlq_url=dlq_url)

    return make


@pytest.fixture
def run_source() -> Iterator[Callable[..., SqsEventSource]]:
    """Start event sources; every one still running is stopped at the end of the test."""
    sources: list[SqsEventSource] = []

    def start(handler: Handler, queue: EmulatedQueue, *, batch_size: int = 10, concurrency: int = 1) -> SqsEventSource:
        source = SqsEventSource(
            handler,
            queue.url,
            queue.arn,
            batch_size=batch_size,
            batching_window_seconds=0,
            concurrency=concurrency,
            timeout_seconds=5,
            function_name="emulated",
        )
        sources.append(source)
        source.start()
        return source

    yield start
    for source in sources:
        source.stop(timeout=5)


def send_all(service: Service, queue: EmulatedQueue, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        assert len(service.sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)["Successful"]) == len(chunk)


def receive_all(service: Service, url: str, expected: int, timeout: float = 5.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < expected and time.monotonic() < deadline:
        for message in service.receive(url, wait=1):
            bodies.append(message["Body"])
    return bodies


def test_records_look_like_lambdas_sqs_event(service: Service, make_queue: Any, run_source: Any) -> None:
    # Given a handler that accepts everything
    queue = make_queue(visibility_timeout=30)
    recorder = Recorder()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.enter(event)
        recorder.leave()
        assert context.get_remaining_time_in_millis() > 0
        return {"batchItemFailures": []}

    # When a message is consumed
    send_all(service, queue, ["hello"])
    run_source(handler, queue)
    wait_until(lambda: service.queue_total(queue.url) == 0, 5, "the message is deleted")

    # Then the record has the fields of Lambda's SQS event
    (record,) = recorder.events[0]["Records"]
    assert record["body"] == "hello"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == ("aws:sqs", queue.arn, "us-east-1")
    assert record["messageId"]
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


def test_a_message_always_reported_failed_ends_in_the_dlq_after_max_receive_count(
    service: Service, make_queue: Any, run_source: Any
) -> None:
    # Given a queue redriving after 2 receives, and a handler that reports every record as failed
    queue = make_queue(visibility_timeout=1, max_receive_count=2)
    recorder = Recorder()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.enter(event)
        recorder.leave()
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in event["Records"]]}

    # When a message is consumed
    send_all(service, queue, ["poison"])
    source = run_source(handler, queue)
    wait_until(lambda: service.queue_total(queue.dlq_url) == 1, 10, "the message reaches the DLQ")
    source.stop()

    # Then it was delivered maxReceiveCount times, then moved to the DLQ, leaving the queue empty
    assert recorder.bodies() == ["poison", "poison"]
    assert receive_all(service, queue.dlq_url, 1) == ["poison"]
    assert service.queue_total(queue.url) == 0


def test_only_the_failed_record_of_a_batch_stays_in_the_queue(
    service: Service, make_queue: Any, run_source: Any
) -> None:
    # Given a handler that fails the record "b" of a batch of three
    queue = make_queue(visibility_timeout=2, max_receive_count=5)
    recorder = Recorder()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.enter(event)
        recorder.leave()
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "b"]}

    # When the three are consumed
    send_all(service, queue, ["a", "b", "c"])
    source = run_source(handler, queue)
    wait_until(lambda: service.queue_total(queue.url) == 1, 5, "two of three messages are deleted")
    source.stop()

    # Then "a" and "c" were deleted and "b" comes back after its visibility timeout
    assert sorted(recorder.bodies()) == ["a", "b", "c"]
    assert receive_all(service, queue.url, 1) == ["b"]
    assert service.queue_total(queue.dlq_url) == 0


def test_a_handler_that_raises_leaves_the_whole_batch(service: Service, make_queue: Any, run_source: Any) -> None:
    # Given a handler that crashes
    queue = make_queue(visibility_timeout=2, max_receive_count=5)
    recorder = Recorder()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.enter(event)
        recorder.leave()
        raise RuntimeError("function crashed")

    # When a batch of three is consumed
    send_all(service, queue, ["a", "b", "c"])
    source = run_source(handler, queue)
    wait_until(lambda: sorted(recorder.bodies()) == ["a", "b", "c"], 5, "the batch is handed to the function")
    source.stop()

    # Then none of them was deleted: all three come back
    assert service.queue_total(queue.url) == 3
    assert sorted(receive_all(service, queue.url, 3)) == ["a", "b", "c"]


def test_two_pollers_process_twenty_messages_without_losing_one(
    service: Service, make_queue: Any, run_source: Any
) -> None:
    # Given 20 messages and a slow handler behind two pollers taking batches of 5
    queue = make_queue(visibility_timeout=30, max_receive_count=5)
    bodies = [f"message-{i}" for i in range(20)]
    send_all(service, queue, bodies)
    recorder = Recorder()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.enter(event)
        time.sleep(0.2)
        recorder.leave()
        return {"batchItemFailures": []}

    # When they are consumed
    source = run_source(handler, queue, batch_size=5, concurrency=2)
    wait_until(lambda: service.queue_total(queue.url) == 0, 15, "the queue is empty")
    source.stop()

    # Then every message was handled and deleted, in batches of at most 5, by both pollers at once
    assert set(recorder.bodies()) == set(bodies)
    assert all(1 <= len(batch) <= 5 for batch in recorder.batches)
    assert len(recorder.threads) == 2
    assert recorder.max_active == 2
    assert service.queue_total(queue.dlq_url) == 0


def test_stop_returns_promptly_and_lets_an_in_flight_batch_finish(
    service: Service, make_queue: Any, run_source: Any
) -> None:
    # Given three idle pollers long-polling an empty queue, and one batch in flight in a slow handler
    queue = make_queue(visibility_timeout=30, max_receive_count=5)
    started = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started.set()
        time.sleep(0.5)
        return {"batchItemFailures": []}

    source = run_source(handler, queue, concurrency=3)
    send_all(service, queue, ["in-flight"])
    assert started.wait(5)

    # When it is stopped
    began = time.monotonic()
    source.stop()
    elapsed = time.monotonic() - began

    # Then it returned within a long poll, every poller ended, and the in-flight message was deleted
    assert elapsed < 3.5
    assert not any(thread.is_alive() for thread in source._threads)
    assert service.queue_total(queue.url) == 0
