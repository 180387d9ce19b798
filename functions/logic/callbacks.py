"""Completion callbacks (``callbackUrl``): once a job is final, a signed POST of its record.

- ``arm`` is applied to the record a final transition writes: the callback becomes ``pending`` (for this final
  version of the job) with a sweep mark, in the same write, so a crash before the message is sent is healed by the
  sweeper;
- ``send`` queues a message of kind ``callback`` (normal lane);
- delivery (same signing and SSRF rules as ``webhook-delivery``) is ``deliver`` [being built].
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from functions.dal.job_queue import JobQueue
from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock, iso, system_clock
from functions.models.errors import StorageError
from functions.models.job import CallbackStatus, Job, JobMessage
from functions.settings import Settings

logger = Logger(child=True)


def arm(job: Job, now_ms: int, grace_seconds: int) -> Job:
    """The final record ``job`` with its callback (if any) pending and a sweep mark to heal a lost message."""
    if job.callback is None:
        return job
    callback = job.callback.model_copy(
        update={
            "status": CallbackStatus.PENDING,
            "attempts": 0,
            "last_error": None,
            "delivered_at": None,
            "for_version": job.version + 1,
        }
    )
    return job.model_copy(update={"callback": callback, "sweep_at": iso(now_ms + grace_seconds * 1000)})


def send(queue: JobQueue, job: Job) -> None:
    """Queue the delivery; if SQS fails, the sweep mark set by ``arm`` makes the sweeper send it."""
    try:
        queue.send(JobMessage(tenant=job.tenant, jobId=job.id, kind="callback"))
    except StorageError:
        logger.warning("callback message not sent; the sweeper will send it", extra={"job_id": job.id}, exc_info=True)


class CallbackDeliverer:
    """Delivers callback messages: ``deliver(message, source_arn, receipt_handle)`` [being built]."""

    def __init__(self, repo: JobsRepository, queue: JobQueue, settings: Settings, clock: Clock = system_clock) -> None:
        self._repo = repo
        self._queue = queue
        self._settings = settings
        self._clock = clock

    def deliver(self, message: JobMessage, source_arn: str, receipt_handle: str) -> None:
        return None
