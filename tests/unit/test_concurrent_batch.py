"""ConcurrentBatchProcessor: a batch's records at the same time, each still succeeding or failing on its own."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.handlers.concurrent_batch import ConcurrentBatchProcessor


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{body}",
                "receiptHandle": f"r-{body}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs-queue",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


class Crash(BaseException):
    """Not an Exception: what the runtime dying looks like to the processor."""


def test_records_of_a_batch_run_at_the_same_time() -> None:
    # Given three records that each wait until all three are running
    together = threading.Barrier(3, timeout=5)
    processor = ConcurrentBatchProcessor(max_workers=lambda: 3)

    def record_handler(record: SQSRecord) -> str:
        together.wait()  # raises BrokenBarrierError if the records ran one after another
        return record.body

    # When the batch is processed
    response = process_partial_response(sqs_event("a", "b", "c"), record_handler, processor)

    # Then none failed: they were all running at once
    assert response == {"batchItemFailures": []}
    assert sorted(record["body"] for record in processor.success_messages) == ["a", "b", "c"]


def test_a_failing_record_fails_alone() -> None:
    # Given a batch where one record's handler raises
    processor = ConcurrentBatchProcessor(max_workers=lambda: 4)

    def record_handler(record: SQSRecord) -> str:
        if record.body == "bad":
            raise ValueError("this one fails")
        return record.body

    # When it is processed
    response = process_partial_response(sqs_event("a", "bad", "c", "d"), record_handler, processor)

    # Then exactly that record is reported, and the others succeeded
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert sorted(record["body"] for record in processor.success_messages) == ["a", "c", "d"]


def test_a_crash_ends_the_invocation_after_every_record_finished() -> None:
    # Given a batch where one record crashes the runtime while another is still running
    finished: list[str] = []
    slow_started = threading.Event()
    processor = ConcurrentBatchProcessor(max_workers=lambda: 2)

    def record_handler(record: SQSRecord) -> str:
        if record.body == "crash":
            slow_started.wait(5)
            raise Crash
        slow_started.set()
        threading.Event().wait(0.2)
        finished.append(record.body)
        return record.body

    # When it is processed, the crash ends the invocation
    with pytest.raises(Crash):
        process_partial_response(sqs_event("crash", "slow"), record_handler, processor)

    # Then only once the other record had finished (nothing keeps running after the invocation)
    assert finished == ["slow"]


def test_one_worker_runs_the_records_in_turn_on_the_invoking_thread() -> None:
    # Given a processor allowed one record at a time
    threads: list[str] = []
    processor = ConcurrentBatchProcessor(max_workers=lambda: 1)

    def record_handler(record: SQSRecord) -> str:
        threads.append(threading.current_thread().name)
        return record.body

    # When a batch is processed
    response = process_partial_response(sqs_event("a", "b", "c"), record_handler, processor)

    # Then every record ran in order, on the invocation's own thread
    assert response == {"batchItemFailures": []}
    assert [record["body"] for record in processor.success_messages] == ["a", "b", "c"]
    assert threads == [threading.current_thread().name] * 3


def test_log_keys_set_by_a_record_stay_on_its_own_lines() -> None:
    # Given records that tag their log lines with their own id and log while all of them are running
    stream = io.StringIO()
    logger = Logger(service="test-concurrent-batch", level="INFO", stream=stream)
    logger.thread_safe_clear_keys()  # this thread's context may hold keys another test set
    together = threading.Barrier(4, timeout=5)
    processor = ConcurrentBatchProcessor(max_workers=lambda: 4)

    def record_handler(record: SQSRecord) -> str:
        logger.thread_safe_append_keys(correlation_id=record.body)
        together.wait()
        logger.info("running")
        return record.body

    # When two batches run on the same pool (threads are reused between invocations)
    for batch in (("a", "b", "c", "d"), ("e", "f", "g", "h")):
        process_partial_response(sqs_event(*batch), record_handler, processor)
    logger.info("after the batches")

    # Then each record's line carries its own id, and none leaks to the invocation's own lines
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line.get("correlation_id") for line in lines[:-1]) == list("abcdefgh")
    assert "correlation_id" not in lines[-1]
