"""What the logic may ask of the job store: the ``JobsRepository`` protocol, its value types and its errors.

Implemented by ``DynamoJobsRepository`` (this package) and by the tests' in-memory fake; the repository contract
suite (tests/integration/test_repository_contract.py) runs the same cases against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from functions.models.errors import JobsError
from functions.models.job import Job, JobStatus, Progress


class InvalidCursor(JobsError):
    """A listing was given a cursor that no page of that same listing returned (the caller's input, not ours)."""


@dataclass(frozen=True)
class IdempotencyClaim:
    """Remember ``key`` -> ``target_id`` with the request's fingerprint until ``expires_at`` (epoch seconds)."""

    key: str
    fingerprint: str
    target_id: str
    expires_at: int
    now: int


@dataclass(frozen=True)
class Claim:
    """What ``claim_pending`` did: ``claimed``, the job as written (version moved on); otherwise the record as it
    stood (whatever made the claim's condition fail), or None when there is no such job."""

    claimed: bool
    job: Job | None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobsRepository(Protocol):
    """Job records, conditional on their ``version`` (``ConcurrentUpdate`` when a writer lost a race), and the
    counters the stats stream keeps. ``StorageError`` for a failure of the store itself."""

    def create(self, job: Job, idempotency: IdempotencyClaim | None = None) -> None: ...
    def create_many(self, jobs: Sequence[Job], *, resume: bool = False) -> int: ...
    def claim_idempotency(self, tenant: str, claim: IdempotencyClaim) -> None: ...
    def get(self, tenant: str, job_id: str) -> Job | None: ...
    def save(self, before: Job, after: Job) -> None: ...
    def claim_pending(
        self, tenant: str, job_id: str, job_type: str, at: str, lease_until_ms: int, latest_sweep_at: str
    ) -> Claim:
        """Start attempt 1 of a pending job of ``job_type`` in one conditional write, with no read before it: what
        ``Job.start`` then ``mark_in_flight`` write (its sweep mark kept if due by ``latest_sweep_at``, else set to
        it). Anything else (another status, a sweep mark later than that, another type) writes nothing and returns
        the record as it stood, for the caller to decide from."""
        ...

    def record_progress(self, job: Job, progress: Progress) -> bool: ...
    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage:
        """Newest first; ``InvalidCursor`` if ``cursor`` is not one this listing returned."""
        ...

    def counters(self, tenant: str) -> dict[str, int]: ...
    def throughput(
        self, tenant: str, minutes: list[str], settled_before: str | None = None
    ) -> dict[str, dict[str, int]]: ...
    def minute_items(self, tenant: str, minutes: list[str]) -> list[dict[str, Any]]: ...
    def due_for_sweep(self, shard: int, until: str, limit: int) -> list[Job]: ...
    def move_sweep_mark(self, job: Job, sweep_at: str) -> bool:
        """Move the sweep mark if the record is still ``job`` (same version), keeping its version."""
        ...
