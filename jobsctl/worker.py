"""Run an SQS-fed handler the way Lambda's event-source mapping does: one implementation for two uses.

``SqsWorker`` is the core shared by the local event-source emulator (``local/event_source.py``, what ``make run``
uses) and the self-hosted worker (``jobs worker``):

- ``concurrency`` slots (threads), each long-polling the queue for a batch of up to ``batch_size`` messages (once
  the first is in, it tops the batch up for at most ``batching_window_seconds``);
- the handler is invoked with an SQS event built from the received messages, exactly as Lambda builds it, either
  with the whole batch (``invoke_size=None``, Lambda's way) or a few records at a time (the worker: one, so that a
  job's message is settled as soon as the job ends and un-started messages can be given back on shutdown);
- partial batch responses: only the records not listed in ``batchItemFailures`` are deleted; failures are left to
  the visibility timeout the handler may have set (backoff); an invocation that raises leaves all its records;
- optional heartbeats: every ``visibility_timeout / 3`` the visibility of every message a slot still holds is
  extended to ``visibility_timeout``, so a long job is never handed to a second consumer. A message whose
  visibility the handler changes itself (``note_visibility_changed``) is no longer extended;
- ``shutdown(grace)``: stop receiving, let in-flight invocations finish within ``grace`` seconds, give back every
  message not started with visibility 0, and let a message whose invocation is still running come back as soon as
  its attempt's lease (the invocation's remaining time) runs out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger("jobsctl.worker")

SQS_MAX_BATCH = 10
MAX_VISIBILITY_SECONDS = 43_200


class InvocationContext:
    """The LambdaContext fields Powertools reads, with a real remaining-time clock."""

    def __init__(
        self, function_name: str, timeout_seconds: float, region: str = "us-east-1", account: str = ""
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account or '000000000000'}:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "worker"
        self.deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class _Held:
    """A received message a slot is responsible for, until it is deleted, left or given back."""

    message: dict[str, Any]
    running: bool = False
    context: InvocationContext | None = None
    heartbeat: bool = True  # False once the handler set its visibility, or once it is settled


class SqsWorker:
    def __init__(
        self,
        handler: Handler,
        queue_url: str,
        queue_arn: str,
        *,
        batch_size: int = 10,
        batching_window_seconds: float = 0,
        concurrency: int = 1,
        timeout_seconds: float = 60,
        function_name: str = "consumer",
        wait_seconds: int = 1,
        invoke_size: int | None = None,
        visibility_timeout: int | None = None,
        sqs: Any = None,
        context_factory: Callable[[str, float], Any] | None = None,
        new_environment: Callable[[], Handler] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._handler = handler
        # Each poller is one execution environment: with this, its own copy of the handler (see environments.py).
        self._new_environment = new_environment
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._batch_size = batch_size
        self._window = batching_window_seconds
        self._timeout = timeout_seconds
        self._function_name = function_name
        self._wait = max(0, min(20, int(wait_seconds)))
        self._invoke_size = invoke_size or batch_size
        self._visibility = visibility_timeout
        self._sqs = sqs if sqs is not None else boto3.client("sqs")
        parts = queue_arn.split(":")
        self._region = parts[3] if len(parts) > 5 else "us-east-1"
        self._account = parts[4] if len(parts) > 5 else ""
        self._context_factory = context_factory or (
            lambda name, timeout: InvocationContext(name, timeout, self._region, self._account)
        )
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.RLock()  # guards _held; held across a heartbeat call so it never lands after a defer
        self._held: dict[str, _Held] = {}  # by receipt handle
        self._threads = [
            threading.Thread(target=self._poll, name=f"{function_name}-poller-{i}", daemon=True)
            for i in range(concurrency)
        ]
        self._heartbeat_thread = (
            threading.Thread(target=self._heartbeat_loop, name=f"{function_name}-heartbeat", daemon=True)
            if visibility_timeout
            else None
        )
        self.invocations = 0
        self.deleted = 0
        self.released = 0
        self.heartbeats = 0

    # --- lifecycle ---

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        if self._heartbeat_thread:
            self._heartbeat_thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving and wait up to ``timeout`` for in-flight invocations (settled as usual)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(thread.is_alive() for thread in self._threads):
            self._closed.set()

    def shutdown(self, grace_seconds: float) -> dict[str, int]:
        """Graceful shutdown: ``stop(grace)``, then give back whatever is still held. Returns what was done."""
        self.stop(grace_seconds)
        released, leased = 0, 0
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
            self._closed.set()
        for item in held:
            if item.running and item.context is not None:
                # Still running: it comes back when its attempt's lease ends, and the next delivery takes over.
                seconds = math.ceil(item.context.get_remaining_time_in_millis() / 1000)
                leased += 1
            else:
                seconds = 0
                released += 1
            self._change_visibility([item.message], seconds)
        self.released += released
        return {"released": released, "unfinished": leased}

    def held_count(self) -> int:
        """Messages received and not yet settled (running or waiting their turn)."""
        with self._lock:
            return len(self._held)

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def note_visibility_changed(self, receipt_handle: str) -> None:
        """The handler set this message's visibility itself (backoff, schedule): heartbeats must not override it."""
        with self._lock:
            item = self._held.get(receipt_handle)
            if item is not None:
                item.heartbeat = False

    # --- polling ---

    def _poll(self) -> None:
        handler = self._new_environment() if self._new_environment else self._handler
        while not self._stopping.is_set():
            try:
                batch = self._gather()
                if batch:
                    self._process(batch, handler)
            except Exception:
                log.exception("poller error")
                self._stopping.wait(0.5)

    def _gather(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(messages) < self._batch_size and not self._stopping.is_set():
            wait = self._wait if not messages else 0  # long-poll for the first message, then top up the batch
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH, self._batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            if received:
                self._hold(received)
            messages.extend(received)
            if messages and window_ends is None:
                window_ends = time.monotonic() + self._window
            if messages and (not received or time.monotonic() >= (window_ends or 0)):
                break
        return messages

    def _hold(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            closed = self._closed.is_set()
            if not closed:
                for message in messages:
                    self._held[message["ReceiptHandle"]] = _Held(message)
        if closed:  # received after shutdown gave everything back: give these back too
            self._change_visibility(messages, 0)

    def _process(self, messages: list[dict[str, Any]], handler: Handler) -> None:
        for start in range(0, len(messages), self._invoke_size):
            chunk = messages[start : start + self._invoke_size]
            if self._stopping.is_set():
                self._release(messages[start:])
                return
            context = self._context_factory(self._function_name, self._timeout)
            with self._lock:
                chunk = [m for m in chunk if m["ReceiptHandle"] in self._held]  # shutdown may have taken them
                for message in chunk:
                    self._held[message["ReceiptHandle"]].running = True
                    self._held[message["ReceiptHandle"]].context = context
            if chunk:
                self._invoke(chunk, context, handler)

    def _release(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            mine = [m for m in messages if self._held.pop(m["ReceiptHandle"], None) is not None]
        if mine:
            self._change_visibility(mine, 0)
            self.released += len(mine)

    def _invoke(self, messages: list[dict[str, Any]], context: Any, handler: Handler) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        self.invocations += 1
        try:
            response = handler(event, context)
        except Exception:
            log.exception("handler raised; the whole batch returns after its visibility timeout")
            self._settle(messages)
            return
        failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        self._settle(messages)
        for start in range(0, len(done), SQS_MAX_BATCH):
            chunk = done[start : start + SQS_MAX_BATCH]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            self.deleted += len(chunk)

    def _settle(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            for message in messages:
                self._held.pop(message["ReceiptHandle"], None)

    # --- heartbeats ---

    def _heartbeat_loop(self) -> None:
        assert self._visibility
        interval = max(0.2, self._visibility / 3)
        while not self._closed.wait(interval):
            try:
                self._heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    def _heartbeat(self) -> None:
        assert self._visibility
        with self._lock:
            messages = [item.message for item in self._held.values() if item.heartbeat]
            if messages:
                self._change_visibility(messages, self._visibility)
                self.heartbeats += 1

    def _change_visibility(self, messages: list[dict[str, Any]], seconds: int) -> None:
        seconds = max(0, min(MAX_VISIBILITY_SECONDS, int(seconds)))
        for start in range(0, len(messages), SQS_MAX_BATCH):
            chunk = messages[start : start + SQS_MAX_BATCH]
            try:
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                        for i, m in enumerate(chunk)
                    ],
                )
            except Exception:
                log.exception("could not change the visibility of %d message(s)", len(chunk))
                continue
            for failure in response.get("Failed", []):
                # Typically the message was deleted meanwhile, or its receipt handle expired: nothing to extend.
                log.debug("visibility change failed: %s", failure)

    # --- the event ---

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
            "eventSourceARN": self.queue_arn,
            "awsRegion": self._region,
        }
