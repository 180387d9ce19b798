"""The SQS side: send a message to a lane, defer a received one, and move one to the dead-letter queue.

Three lanes, each a queue with its own DLQ and consumer (see infra/constructs/queue_consumer.py): ``normal``,
``high`` and ``ordered``. Which lane a message goes to is decided by the caller (logic/lanes.py); this module sends
it there. The ``ordered`` lane is a FIFO queue, one message group per (tenant, group): SQS hands out a group's
messages one at a time, in order, and holds the group while one is in flight (a retry's backoff, set on its
visibility, therefore holds only its own group). FIFO has no per-message delay: ``delay_seconds`` is ignored there,
grouped scheduled jobs are sent when due (enqueue.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol, cast

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError
from functions.models.job import JobMessage

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit
# SQS caps visibility at 12 h counted from when the message was received; a received message may have waited for
# up to a Lambda timeout (15 min at most) before it is deferred, so stay that far below the cap.
MAX_VISIBILITY_SECONDS = 43_200 - 900


def message_group_id(tenant: str, group_id: str) -> str:
    """The SQS MessageGroupId of a tenant's group: a SHA-256 hex digest of the tenant and the group.

    SQS allows at most 128 characters from ``[A-Za-z0-9]`` and ``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~``; a groupId alone
    may already be 128 characters, and a tenant name is not bound to that alphabet. A digest always fits (64 hex
    characters), keeps tenants apart (two tenants' groups of one name are two groups) and is stable, so every job
    of a group lands in the same line however it is sent (enqueue, sweeper, re-send after a limit). The tenant's
    length leads, so that ``a#b``/``c`` and ``a``/``b#c`` are two groups as well."""
    return hashlib.sha256(f"{len(tenant)}:{tenant}#{group_id}".encode()).hexdigest()


class Lane(StrEnum):
    NORMAL = "normal"
    HIGH = "high"
    ORDERED = "ordered"


@dataclass(frozen=True)
class QueueLanes:
    """The queue and DLQ URL of each lane; a lane without a URL falls back to the normal one."""

    normal: str
    normal_dlq: str = ""
    high: str = ""
    high_dlq: str = ""
    ordered: str = ""
    ordered_dlq: str = ""

    def available(self) -> frozenset[Lane]:
        """The lanes this deployment has a queue for (the normal one always)."""
        urls = {Lane.NORMAL: self.normal, Lane.HIGH: self.high, Lane.ORDERED: self.ordered}
        return frozenset(lane for lane, url in urls.items() if url or lane == Lane.NORMAL)

    def url(self, lane: Lane) -> str:
        return {Lane.NORMAL: self.normal, Lane.HIGH: self.high, Lane.ORDERED: self.ordered}[lane] or self.normal

    def dlq(self, lane: Lane) -> str:
        return {Lane.NORMAL: self.normal_dlq, Lane.HIGH: self.high_dlq, Lane.ORDERED: self.ordered_dlq}[
            lane
        ] or self.normal_dlq


class LaneQueue(Protocol):
    """The lanes' queues: a message goes to the lane it is given (an ``ordered`` one needs its ``group_id``)."""

    def available_lanes(self) -> frozenset[Lane]: ...
    def send(
        self, message: JobMessage, delay_seconds: int = 0, *, lane: Lane = Lane.NORMAL, group_id: str | None = None
    ) -> None: ...
    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None: ...
    def dead_letter(self, body: str, reason: str, *, source_arn: str = "") -> None: ...


class SqsJobQueue:
    def __init__(self, client: Any, queue_url: str | QueueLanes, dlq_url: str = "") -> None:
        self._sqs = client
        self.lanes = queue_url if isinstance(queue_url, QueueLanes) else QueueLanes(queue_url, dlq_url)
        self._queue_url = self.lanes.normal
        self._dlq_url = self.lanes.normal_dlq

    def available_lanes(self) -> frozenset[Lane]:
        return self.lanes.available()

    def send(
        self, message: JobMessage, delay_seconds: int = 0, *, lane: Lane = Lane.NORMAL, group_id: str | None = None
    ) -> None:
        """Send to ``lane``'s queue: into the message group of ``group_id`` on the ordered (FIFO) lane, with the delay
        on the others. A lane without a queue is the normal one."""
        url = self.lanes.url(lane)
        if lane == Lane.ORDERED and self.lanes.ordered:
            if group_id is None:
                raise ValueError("a message to the ordered lane needs its group id")
            self._call(
                "SendMessage",
                QueueUrl=url,
                MessageBody=message.to_body(),
                MessageGroupId=message_group_id(message.tenant, group_id),
                # Duplicates are the record's to sort out, never SQS's: a re-send must not be swallowed as one.
                MessageDeduplicationId=uuid.uuid4().hex,
            )
            return
        delay = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        self._call("SendMessage", QueueUrl=url, MessageBody=message.to_body(), DelaySeconds=delay)

    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after ``seconds`` (the record's failure is reported separately)."""
        self._call(
            "ChangeMessageVisibility",
            QueueUrl=self._url_of(source_arn),
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(MAX_VISIBILITY_SECONDS, int(seconds))),
        )

    def dead_letter(self, body: str, reason: str, *, source_arn: str = "") -> None:
        """Copy a message to the DLQ of the lane it came from (``source_arn``; the normal lane if unknown)."""
        lane = self._lane_of(source_arn)
        extra: dict[str, Any] = {}
        if lane == Lane.ORDERED:
            extra = {"MessageGroupId": "dead-letters", "MessageDeduplicationId": uuid.uuid4().hex}
        self._call(
            "SendMessage",
            QueueUrl=self.lanes.dlq(lane),
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256] or "unknown"}},
            **extra,
        )

    def _lane_of(self, source_arn: str) -> Lane:
        name = source_arn.rsplit(":", 1)[-1] if source_arn else ""
        for lane in (Lane.HIGH, Lane.ORDERED):
            url = {Lane.HIGH: self.lanes.high, Lane.ORDERED: self.lanes.ordered}[lane]
            if name and url and url.rstrip("/").rsplit("/", 1)[-1] == name:
                return lane
        return Lane.NORMAL

    def _url_of(self, source_arn: str) -> str:
        if not source_arn:
            return self._queue_url
        return _queue_url_for_arn(self._sqs, source_arn)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = {
            "SendMessage": self._sqs.send_message,
            "ChangeMessageVisibility": self._sqs.change_message_visibility,
        }[operation]
        try:
            return cast(dict[str, Any], method(**kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"SQS {operation} failed: {exc}") from exc


@lru_cache(maxsize=16)
def _queue_url_for_arn(client: Any, arn: str) -> str:
    # arn:aws:sqs:<region>:<account>:<name>; asked once per container, so it holds for any endpoint (AWS or moto).
    _, _, _, _, account, name = arn.split(":", 5)
    try:
        return str(client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"SQS GetQueueUrl failed: {exc}") from exc
