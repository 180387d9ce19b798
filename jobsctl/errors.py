"""Errors of the jobs API as exceptions carrying its ``code``, ``message``, HTTP ``status`` and ``details``."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Anything the client raises."""


class JobsConnectionError(JobsError):
    """The API could not be reached (connection refused, DNS, timeout, TLS)."""


class JobsApiError(JobsError):
    """The API answered with an error: ``{"error": message, "code": code, "details"?: ...}``."""

    def __init__(self, code: str, message: str, status: int, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details


class ValidationError(JobsApiError):
    """400 INVALID_* (body, type, payload, option, query, ...) and 413 PAYLOAD_TOO_LARGE."""


class ForbiddenError(JobsApiError):
    """403: missing or unknown API key."""


class NotFoundError(JobsApiError):
    """404: no such job (for this tenant)."""


class InvalidStateError(JobsApiError):
    """409 INVALID_STATE: the job's status does not allow the action (retry a completed job, cancel a running one)."""


class ConflictError(JobsApiError):
    """409 CONFLICT: a lost race on the same job; trying again usually succeeds."""


class ThrottledError(JobsApiError):
    """429: API Gateway's throttling (any 429 without the API's own code)."""


class RateLimitedError(ThrottledError):
    """429 RATE_LIMITED: the key is over its own rate limit; ``retry_after`` is the seconds to wait (Retry-After)."""

    def __init__(self, code: str, message: str, status: int, details: Any = None) -> None:
        super().__init__(code, message, status, details)
        seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
        self.retry_after: int | None = seconds if isinstance(seconds, int) else None


class UnavailableError(JobsApiError):
    """503: the job store is unavailable; try again."""


class ServerError(JobsApiError):
    """Any other 5xx."""


_BY_CODE: dict[str, type[JobsApiError]] = {
    "FORBIDDEN": ForbiddenError,
    "NOT_FOUND": NotFoundError,
    "INVALID_STATE": InvalidStateError,
    "CONFLICT": ConflictError,
    "UNAVAILABLE": UnavailableError,
    "PAYLOAD_TOO_LARGE": ValidationError,
    "THROTTLED": ThrottledError,
    "RATE_LIMITED": RateLimitedError,
}
_BY_STATUS: dict[int, type[JobsApiError]] = {
    400: ValidationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: ThrottledError,
    503: UnavailableError,
}


def error_for(status: int, code: str, message: str, details: Any = None) -> JobsApiError:
    """The most specific exception for an API error: by code, then by status."""
    cls = _BY_CODE.get(code)
    if cls is None and code.startswith("INVALID_"):
        cls = ValidationError
    if cls is None:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else JobsApiError)
    return cls(code, message, status, details)
