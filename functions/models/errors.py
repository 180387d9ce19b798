"""Domain exceptions. Each API-facing error carries a stable code and an HTTP status, mapped in one place."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base of every error this service raises on purpose."""


class ApiError(JobsError):
    """An error the API answers: the HTTP status derives from the class, with a stable code and, in ``when``, the
    sentence the OpenAPI document gives for it. ``error_table()`` lists them all: the one table of the API's errors."""

    status_code = 400
    code = "BAD_REQUEST"
    when = "the request is not valid"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidBody(ApiError):
    code = "INVALID_BODY"
    when = "the body is not a JSON object (not JSON, not UTF-8 or base64, or another JSON value)"


class InvalidType(ApiError):
    code = "INVALID_TYPE"
    when = "`type` is missing or not a registered job type; the message lists the types"


class InvalidPayload(ApiError):
    code = "INVALID_PAYLOAD"
    when = "the payload does not fit the type's model; `details` lists `{field, message}`"


class InvalidOption(ApiError):
    code = "INVALID_OPTION"
    when = (
        "`priority`, `maxAttempts`, `timeoutSeconds`, `delaySeconds` or `runAt` is out of range or not a JSON "
        "integer/string, both `delaySeconds` and `runAt` are given, a field is unknown (`details.allowed` lists "
        "the fields), or `dependsOn` is not 1-100 ids, names a job the tenant does not have (`details.unknownIds`) "
        "or comes with a time"
    )


class InvalidMessage(ApiError):
    code = "INVALID_MESSAGE"
    when = "`message` is not a string of 1 to 500 characters after trimming"


class InvalidQuery(ApiError):
    code = "INVALID_QUERY"
    when = (
        "a query parameter is unknown, repeated, empty or out of range (an unknown status or type too), or the "
        "cursor is not one of this listing"
    )


class InvalidUpload(ApiError):
    code = "INVALID_UPLOAD"
    when = (
        "`contentType` is not an accepted image type or `size` is out of range (`details` has the accepted types "
        "and the limit)"
    )


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    when = "the body is larger than the function's limit (or the gateway's 10 MB)"


class Forbidden(ApiError):
    status_code = 403
    code = "FORBIDDEN"
    when = "the `x-api-key` header is missing, unknown, revoked or names no tenant, or a `read` key tried to write"


class NotFound(ApiError):
    status_code = 404
    code = "NOT_FOUND"
    when = "no such job (or schedule) for this tenant (another tenant's is not found either)"


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    when = "the path exists but not with this method; the `Allow` header lists its methods"


class InvalidState(ApiError):
    status_code = 409
    code = "INVALID_STATE"
    when = "the job's status does not allow this"


class Conflict(ApiError):
    """The HTTP form of ``ConcurrentUpdate``."""

    status_code = 409
    code = "CONFLICT"
    when = "the job kept changing while this request tried to update it; try again"


class IdempotencyConflict(ApiError):
    status_code = 409
    code = "IDEMPOTENCY_CONFLICT"
    when = (
        "this `Idempotency-Key` was used in the last 24 hours with a different request (`details.jobId` names its "
        "job), or it differs from the body's `idempotencyKey`"
    )


class InvalidSignature(ApiError):
    status_code = 401
    code = "INVALID_SIGNATURE"
    when = "the webhook's signature header is missing, malformed, stale or does not match"


class Throttled(ApiError):
    """API Gateway's stage throttling (account protection), never raised by the functions; here for the table."""

    status_code = 429
    code = "THROTTLED"
    when = "API Gateway's stage throttling refused the request (account protection, answered by API Gateway)"


class RateLimited(ApiError):
    """The caller's key is over its own rate limit, counted by the service (functions/logic/rate_limits.py)."""

    status_code = 429
    code = "RATE_LIMITED"
    when = "the key is over its rate limit (its requests per second and burst); `Retry-After` gives the seconds to wait"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfterSeconds": retry_after})
        self.retry_after = retry_after


class Unavailable(ApiError):
    status_code = 503
    code = "UNAVAILABLE"
    when = "the job store or the key lookup is unavailable; try again"


class InvalidSchedule(ApiError):
    code = "INVALID_SCHEDULE"
    when = (
        "a schedule's `name`, `cron`, `timezone`, `enabled` or `job` is missing or not valid, or a field is unknown; "
        "`details.field` names the field"
    )


class ScheduleExists(ApiError):
    status_code = 409
    code = "SCHEDULE_EXISTS"
    when = "the tenant already has a schedule of this `name`"


def error_table() -> dict[str, type[ApiError]]:
    """Every code the API answers, with its class (and so its status and description)."""
    table: dict[str, type[ApiError]] = {}
    pending: list[type[ApiError]] = list(ApiError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


# An id or name echoed in a message is cut to this many characters (a 5,000-character id is not sent back whole).
SHOWN_MAX_LENGTH = 64


def shown(value: str) -> str:
    """``value`` as an error message quotes it: at most ``SHOWN_MAX_LENGTH`` characters, then an ellipsis."""
    return value if len(value) <= SHOWN_MAX_LENGTH else value[:SHOWN_MAX_LENGTH] + "…"


# --- Storage and queue failures (the DAL wraps SDK errors in these) ---


class StorageError(JobsError):
    """DynamoDB, SQS or S3 failed for a reason that is not the caller's fault."""


class FileNotFound(StorageError):
    """The named object is not in the files bucket (a caller's or a job's mistake, not an outage)."""


class ConcurrentUpdate(JobsError):
    """A conditional write lost a race: the record changed since it was read."""


class JobDeferred(JobsError):
    """The message must come back later (backoff, schedule, a callback's retry); its visibility is already set."""


class IdempotencyKeyUsed(JobsError):
    """The idempotency key is already taken (within its lifetime) by an earlier request."""

    def __init__(self, target_id: str, fingerprint: str) -> None:
        super().__init__(f"idempotency key already used for {target_id}")
        self.target_id = target_id
        self.fingerprint = fingerprint


# --- Job outcomes, raised by job handlers ---


class JobFailure(JobsError):
    """Base of the errors a job handler raises to fail an attempt."""

    retryable = True


class RetryableJobError(JobFailure):
    """Transient: timeouts, throttling, 5xx. The attempt is retried with backoff while attempts remain."""


class PermanentJobError(JobFailure):
    """Retrying cannot help (bad input found late, a 4xx from a remote): the job fails at once."""

    retryable = False
