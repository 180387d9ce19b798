"""A local SQS event-source mapping that behaves like Lambda's.

Several pollers each gather a batch (up to ``batch_size`` messages, waiting at most ``batching_window`` seconds
once the first message is in), invoke the handler with an SQS event, then delete only the messages the partial
batch response did not list as failures. Failures are left alone: they come back when their visibility timeout
(possibly set by the handler) runs out, and SQS's redrive policy moves them to the DLQ after maxReceiveCount.
If the invocation itself raises, the whole batch is left, as Lambda does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3

from local.aws import REGION
from local.lambda_context import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
log = logging.getLogger("local.event_source")


class SqsEventSource:
    def __init__(
        self,
        handler: Handler,
        queue_url: str,
        queue_arn: str,
        *,
        batch_size: int,
        batching_window_seconds: float,
        concurrency: int,
        timeout_seconds: int,
        function_name: str = "consumer",
    ) -> None:
        self._handler = handler
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._batch_size = batch_size
        self._window = batching_window_seconds
        self._timeout = timeout_seconds
        self._function_name = function_name
        self._sqs = boto3.client("sqs")
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll, name=f"{function_name}-poller-{i}", daemon=True)
            for i in range(concurrency)
        ]
        self.invocations = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and let in-flight batches finish (their messages are then deleted or left as usual)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._gather()
                if batch:
                    self._invoke(batch)
            except Exception:
                log.exception("poller error")
                time.sleep(0.5)

    def _gather(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(messages) < self._batch_size and not self._stopping.is_set():
            wait = 1 if not messages else 0  # long-poll for the first message, then top up the batch
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(10, self._batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages.extend(received)
            if messages and window_ends is None:
                window_ends = time.monotonic() + self._window
            if messages and (not received or time.monotonic() >= (window_ends or 0)):
                break
        return messages

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        self.invocations += 1
        try:
            response = self._handler(event, LocalContext(self._function_name, self._timeout))
        except Exception:
            log.exception("handler raised; the whole batch returns after its visibility timeout")
            return
        failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("MessageAttributes") or {}
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": value.get("BinaryValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in attributes.items()
            },
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": REGION,
        }
