"""Completion callbacks (``callbackUrl``): once a job is final, a signed POST of its record.

- ``arm`` is applied to the record a final transition writes: the callback becomes ``pending`` (for this final
  version of the job) with a sweep mark, in the same write, so a crash before the message is sent is healed by the
  sweeper;
- ``send`` queues a message of kind ``callback`` (normal lane);
- ``CallbackDeliverer.deliver`` handles that message: one POST of the record, then its outcome on the record.

Delivery uses the signing and SSRF rules of ``webhook-delivery``: the same tenant secret and headers
(``X-Jobs-Signature: t=..,v1=..``, ``X-Jobs-Timestamp``, ``X-Jobs-Attempt``), ``Idempotency-Key: <job id>:<n>``
where ``n`` names the final state being reported (the same on every attempt; a job retried and final again gets a
new one), addresses vetted after DNS, redirects not followed. 2xx is delivered; 408, 429, 5xx, timeouts and
network errors are retried with the job backoff up to ``callback_max_attempts``; a refused address, any other
status (3xx, 4xx) fails the callback at once. The job itself is final and stays as it is: only ``callback`` changes.

How a callback is never lost nor sent twice for the same attempt:

- the record, not the message, decides: a message for a callback that is no longer pending (delivered, failed,
  reset by a retry of the job) is dropped;
- a failed attempt records when the next one is due (``next_attempt_at_ms``, unused by final jobs otherwise) and
  makes its own message come back then (visibility); a copy arriving before that time is a duplicate and is
  dropped;
- every attempt moves the sweep mark past the next attempt time by the grace period, so the sweeper re-sends a
  callback only when its message really went missing (see ``sweep.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from functions.dal.jobs_repository import JobsRepository
from functions.logic.backoff import backoff_seconds
from functions.logic.clock import Clock, iso, system_clock
from functions.logic.lanes import JobQueue
from functions.models.errors import ConcurrentUpdate, JobDeferred, StorageError
from functions.models.job import Callback, CallbackStatus, Job, JobMessage
from functions.settings import Settings

if TYPE_CHECKING:
    from functions.logic.job_types.webhook import HttpSender

logger = Logger(child=True)

USER_AGENT = "jobs-callback/1.0"
MAX_ERROR_LENGTH = 500
# A message up to this early is delivered rather than dropped as a duplicate (visibility is whole seconds).
EARLY_TOLERANCE_MS = 1000
_MAX_RACE_RETRIES = 3


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
    return job.model_copy(
        update={"callback": callback, "sweep_at": iso(now_ms + grace_seconds * 1000), "next_attempt_at_ms": None}
    )


def reset(job: Job) -> Job:
    """``job`` with its callback back to "not final yet" (a retried job reports its next final state anew)."""
    if job.callback is None:
        return job
    return job.model_copy(update={"callback": Callback(url=job.callback.url)})


def send(queue: JobQueue, job: Job) -> None:
    """Queue the delivery; if SQS fails, the sweep mark set by ``arm`` makes the sweeper send it."""
    try:
        queue.send(JobMessage(tenant=job.tenant, jobId=job.id, kind="callback"))
    except StorageError:
        logger.warning("callback message not sent; the sweeper will send it", extra={"job_id": job.id}, exc_info=True)


def announce_final(queue: JobQueue | None, job: Job, after_final: Callable[[Job], None] | None, *, event: str) -> None:
    """A job ended outside a consumer (``event``: "a cancel", ...): its callback goes out (without ``queue``, the
    sweeper sends it) and ``after_final`` settles its batch. A batch not settled is looked at again when any copy of
    the job's message arrives, so that failure is logged, not raised: the job's own change stands."""
    if job.callback is not None and queue is not None:
        send(queue, job)
    if after_final is not None:
        try:
            after_final(job)
        except StorageError:
            logger.warning(f"batch not settled after {event}", extra={"job_id": job.id}, exc_info=True)


def is_pending(job: Job) -> bool:
    """Whether the record still wants its callback delivered (a final job, a pending callback for this state)."""
    callback = job.callback
    return (
        job.status.is_final
        and callback is not None
        and callback.status == CallbackStatus.PENDING
        and callback.for_version is not None
        and callback.for_version <= job.version
    )


@dataclass(frozen=True)
class _Attempt:
    delivered: bool
    retryable: bool = False
    error: str | None = None


def _default_secrets(settings: Settings) -> Callable[[str], str]:
    from functions.dal.clients import client
    from functions.dal.secrets import WebhookSecrets

    return WebhookSecrets(client("secretsmanager"), settings.webhook_secret_prefix).secret_for


class CallbackDeliverer:
    """Delivers callback messages: ``deliver(message, source_arn, receipt_handle)``.

    ``secret_for(tenant)`` gives the tenant's signing secret (default: the ``webhook-delivery`` secret in Secrets
    Manager); ``http`` sends the request (default: ``SafeHttpClient`` with the settings' network policy).
    """

    def __init__(
        self,
        repo: JobsRepository,
        queue: JobQueue,
        settings: Settings,
        clock: Clock = system_clock,
        *,
        secret_for: Callable[[str], str] | None = None,
        http: HttpSender | None = None,
    ) -> None:
        self._repo = repo
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._secret_for = secret_for
        self._http = http

    def deliver(self, message: JobMessage, source_arn: str, receipt_handle: str) -> None:
        """One delivery attempt; returns when there is nothing more to do, raises ``JobDeferred`` to come back."""
        job = self._repo.get(message.tenant, message.job_id)
        if job is None or not is_pending(job):
            logger.info("callback message dropped: nothing pending", extra={"job_id": message.job_id})
            return None
        if job.next_attempt_at_ms is not None and job.next_attempt_at_ms - self._clock() > EARLY_TOLERANCE_MS:
            # The failed attempt's own message comes back at that time; this is a copy (e.g. a sweeper re-send).
            logger.info("callback message dropped: the next attempt is not due", extra={"job_id": job.id})
            return None
        assert job.callback is not None and job.callback.for_version is not None
        for_version = job.callback.for_version
        attempt = self._post(job)
        for _ in range(_MAX_RACE_RETRIES):
            delay = self._record(job, attempt)
            if delay is None:
                return None
            if delay >= 0:
                self._queue.defer(source_arn, receipt_handle, delay)
                raise JobDeferred(f"callback attempt failed; next attempt in {delay}s")
            # Lost a race (the sweeper moved the mark, a copy recorded its attempt): decide on the fresh record.
            fresh = self._repo.get(job.tenant, job.id)
            if fresh is None or not is_pending(fresh) or fresh.callback is None:
                return None
            if fresh.callback.for_version != for_version:
                return None  # the job was retried and is final again: its own callback message reports that
            job = fresh
        raise ConcurrentUpdate(f"job '{job.id}' kept changing while its callback was recorded")

    # --- one attempt ---

    def _post(self, job: Job) -> _Attempt:
        # The HTTP side is loaded by the first delivery: most consumers' containers never send a callback.
        from functions.adapters.net import NetError, is_retryable_status
        from functions.logic.job_types.webhook import answer_detail, deliver, encode_body, signed_headers

        assert job.callback is not None
        body = encode_body(job.to_api())
        timestamp = self._clock() // 1000
        secret = self._secret()(job.tenant)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signed_headers(
                secret,
                timestamp,
                body,
                attempt=job.callback.attempts + 1,
                idempotency_key=f"{job.id}:{job.callback.for_version}",
            ),
        }
        try:
            response = deliver(self._client(), "POST", job.callback.url, headers, body)
        except NetError as exc:
            return _Attempt(delivered=False, retryable=exc.retryable, error=f"callback failed: {exc.message}")
        if response.ok:
            return _Attempt(delivered=True)
        detail = answer_detail(response, "redirects are not followed")
        error = f"callback URL answered HTTP {response.status} {response.reason}".rstrip()
        return _Attempt(
            delivered=False,
            retryable=is_retryable_status(response.status),
            error=f"{error}: {detail}" if detail else error,
        )

    def _record(self, job: Job, attempt: _Attempt) -> int | None:
        """Write the attempt's outcome: None when done, the delay (s) of the next attempt, or -1 on a lost race."""
        assert job.callback is not None
        now = self._clock()
        attempts = job.callback.attempts + 1
        grace_ms = self._settings.pending_grace_seconds * 1000
        delay: int | None = None
        if attempt.delivered:
            callback = job.callback.model_copy(
                update={
                    "status": CallbackStatus.DELIVERED,
                    "attempts": attempts,
                    "last_error": None,
                    "delivered_at": iso(now),
                }
            )
            update: dict[str, Any] = {"callback": callback, "sweep_at": None, "next_attempt_at_ms": None}
        elif attempt.retryable and attempts < self._settings.callback_max_attempts:
            delay = backoff_seconds(attempts, self._settings.backoff_base_seconds, self._settings.backoff_cap_seconds)
            callback = job.callback.model_copy(update={"attempts": attempts, "last_error": _short(attempt.error)})
            due = now + delay * 1000
            update = {"callback": callback, "next_attempt_at_ms": due, "sweep_at": iso(due + grace_ms)}
        else:
            callback = job.callback.model_copy(
                update={"status": CallbackStatus.FAILED, "attempts": attempts, "last_error": _short(attempt.error)}
            )
            update = {"callback": callback, "sweep_at": None, "next_attempt_at_ms": None}
        try:
            self._repo.save(job, job.model_copy(update=update))
        except ConcurrentUpdate:
            return -1
        logger.info(
            "callback attempt recorded",
            extra={"job_id": job.id, "callback_status": callback.status, "attempt": attempts, "error": attempt.error},
        )
        return delay

    def _secret(self) -> Callable[[str], str]:
        if self._secret_for is None:
            self._secret_for = _default_secrets(self._settings)
        return self._secret_for

    def _client(self) -> HttpSender:
        if self._http is None:
            from functions.adapters.net import SafeHttpClient

            self._http = SafeHttpClient.from_settings(self._settings, user_agent=USER_AGENT)
        return self._http


def _short(error: str | None) -> str | None:
    return error[:MAX_ERROR_LENGTH] if error else error
