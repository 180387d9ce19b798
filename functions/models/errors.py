"""Domain exceptions. Each API-facing error carries a stable code and an HTTP status, mapped in one place."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base of every error this service raises on purpose."""


class ApiError(JobsError):
    status_code = 400
    code = "BAD_REQUEST"

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


class InvalidType(ApiError):
    code = "INVALID_TYPE"


class InvalidPayload(ApiError):
    code = "INVALID_PAYLOAD"


class InvalidOption(ApiError):
    code = "INVALID_OPTION"


class InvalidMessage(ApiError):
    code = "INVALID_MESSAGE"


class InvalidQuery(ApiError):
    code = "INVALID_QUERY"


class InvalidUpload(ApiError):
    code = "INVALID_UPLOAD"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class Forbidden(ApiError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(ApiError):
    status_code = 404
    code = "NOT_FOUND"


class InvalidState(ApiError):
    status_code = 409
    code = "INVALID_STATE"


class IdempotencyConflict(ApiError):
    status_code = 409
    code = "IDEMPOTENCY_CONFLICT"


class InvalidSignature(ApiError):
    status_code = 401
    code = "INVALID_SIGNATURE"


class Unavailable(ApiError):
    status_code = 503
    code = "UNAVAILABLE"


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
