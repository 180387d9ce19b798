"""Developer tools for the jobs service: a Python client, the ``jobs`` CLI and a self-hosted worker."""

from jobsctl.client import JobsClient
from jobsctl.errors import (
    ConflictError,
    ForbiddenError,
    InvalidStateError,
    JobsApiError,
    JobsConnectionError,
    JobsError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    ThrottledError,
    UnavailableError,
    ValidationError,
)
from jobsctl.models import HistoryEntry, Job, JobPage, Stats

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "HistoryEntry",
    "InvalidStateError",
    "Job",
    "JobPage",
    "JobsApiError",
    "JobsClient",
    "JobsConnectionError",
    "JobsError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "Stats",
    "ThrottledError",
    "UnavailableError",
    "ValidationError",
]
