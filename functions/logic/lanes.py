"""Which lane a message goes to, and the ``JobQueue`` the use cases send through.

The rule (one place): a completion callback goes to the ``normal`` lane; a job with a ``groupId`` to the ``ordered``
lane (its group's FIFO line, whatever its priority); a job with priority at or above the threshold to the ``high``
lane, so that a backlog of normal jobs never sits in front of it; everything else to ``normal``. A lane the
deployment has no queue for is skipped. The dal's queue (dal/job_queue.py) sends to the lane it is told.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from functions.dal.job_queue import Lane, LaneQueue
from functions.models.bounds import HIGH_PRIORITY_THRESHOLD_DEFAULT, PRIORITY_DEFAULT
from functions.models.job import JobMessage


def lane_for(
    message: JobMessage,
    priority: int,
    group_id: str | None,
    *,
    high_priority_threshold: int,
    available: Collection[Lane],
) -> Lane:
    if message.kind == "callback":
        return Lane.NORMAL
    if group_id is not None and Lane.ORDERED in available:
        return Lane.ORDERED
    if priority >= high_priority_threshold and Lane.HIGH in available:
        return Lane.HIGH
    return Lane.NORMAL


class JobQueue(Protocol):
    """What the use cases ask of the queue: send a job's message (to the lane its priority and group decide), put a
    received message back for later, copy one to its lane's dead-letter queue."""

    def send(
        self,
        message: JobMessage,
        delay_seconds: int = 0,
        *,
        priority: int = PRIORITY_DEFAULT,
        group_id: str | None = None,
    ) -> None: ...
    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None: ...
    def dead_letter(self, body: str, reason: str, *, source_arn: str = "") -> None: ...


class LaneRouter:
    """A ``JobQueue`` over the lanes' queues: picks each message's lane (``lane_for``), then lets them send it."""

    def __init__(self, queue: LaneQueue, high_priority_threshold: int = HIGH_PRIORITY_THRESHOLD_DEFAULT) -> None:
        self.queue = queue
        self.high_priority_threshold = high_priority_threshold
        self._available = queue.available_lanes()

    def lane_for(self, message: JobMessage, priority: int = PRIORITY_DEFAULT, group_id: str | None = None) -> Lane:
        return lane_for(
            message,
            priority,
            group_id,
            high_priority_threshold=self.high_priority_threshold,
            available=self._available,
        )

    def send(
        self,
        message: JobMessage,
        delay_seconds: int = 0,
        *,
        priority: int = PRIORITY_DEFAULT,
        group_id: str | None = None,
    ) -> None:
        lane = self.lane_for(message, priority, group_id)
        self.queue.send(message, delay_seconds, lane=lane, group_id=group_id if lane == Lane.ORDERED else None)

    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None:
        self.queue.defer(source_arn, receipt_handle, seconds)

    def dead_letter(self, body: str, reason: str, *, source_arn: str = "") -> None:
        self.queue.dead_letter(body, reason, source_arn=source_arn)
