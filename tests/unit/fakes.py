"""In-memory stand-ins for the DAL and the clock, faithful to the contracts the logic relies on.

``InMemoryJobsRepository`` behaves like ``DynamoJobsRepository`` (tests/integration/test_repository_contract.py runs
the same cases against both): conditional writes on ``version``, newest-first listing with opaque cursors, a sparse
sweep index by shard, and counters that records do not write: every record write appends a change to the fake's
stream, which the service's stats aggregator (logic/stats_stream.py) applies before a read of the counters, as the
integration tests' stream does.
``RecordingQueue`` records what the logic asked SQS to do and can be told to fail sends.
``FakeClock`` is the service's ``Clock`` (epoch ms) under the test's control.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from functions.dal.jobs_repository import (
    ENQUEUED_COUNTER,
    STATUS_COUNTERS,
    THROUGHPUT_COUNTERS,
    Claim,
    IdempotencyClaim,
    InvalidCursor,
    JobPage,
    StatsItem,
    stream_change,
    stream_sequence,
    sweep_shard,
)
from functions.logic.clock import iso
from functions.logic.stats_stream import apply_stream_batch
from functions.models.errors import ConcurrentUpdate, IdempotencyKeyUsed, StorageError
from functions.models.job import HistoryEntry, Job, JobMessage, JobStatus, Progress

# register_job_type(name, handler, payload=EmptyPayload) -> name: the conftest fixture's signature.
RegisterJobType = Callable[..., str]


class EmptyPayload(BaseModel):
    """The payload model of test job types that take no input."""

    model_config = ConfigDict(extra="forbid")


# 2026-01-01T00:00:00Z: a round number keeps expected ISO strings readable.
EPOCH_MS = 1_767_225_600_000


class FakeClock:
    """A ``Clock``: call it for epoch milliseconds; move it with ``advance``."""

    def __init__(self, start_ms: int = EPOCH_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float = 0, ms: int = 0) -> int:
        self.now_ms += int(seconds * 1000) + ms
        return self.now_ms

    def iso(self, offset_seconds: float = 0) -> str:
        return iso(self.now_ms + int(offset_seconds * 1000))


class InMemoryJobsRepository:
    """A ``JobsRepository`` held in a dict, with DynamoDB's conditional-write semantics and the stats stream's
    counters."""

    def __init__(self, sweep_shards: int = 4) -> None:
        self.sweep_shards = sweep_shards
        self._jobs: dict[tuple[str, str], Job] = {}
        # The table's stream (Lambda's record shape) and what the aggregator made of it.
        self.stream: list[dict[str, Any]] = []
        self._sequence = itertools.count(1)
        self._delivered = 0  # stream records handed to the aggregator so far (the event source's position)
        self._applied: dict[StatsItem, dict[str, str]] = {}  # per stats item: stream shard -> last sequence applied
        self._counters: dict[str, Counter[str]] = {}
        self._per_minute: dict[tuple[str, str], Counter[str]] = {}
        self.settled_before: str | None = None  # what the last throughput read was told
        # (tenant, key) -> claim, and (tenant, batch id) -> {"finished", "unsuccessful"}: as DynamoDB keeps them.
        self.idempotency: dict[tuple[str, str], IdempotencyClaim] = {}
        self.batch_counters: dict[tuple[str, str], Counter[str]] = {}
        self.writes = 0
        self.progress_writes = 0
        # Called once, right before the next save is checked: lets a test play a concurrent writer.
        self.before_next_save: Callable[[], None] | None = None

    # --- writes ---

    def create(self, job: Job, idempotency: IdempotencyClaim | None = None) -> None:
        key = (job.tenant, job.id)
        if key in self._jobs:
            raise ConcurrentUpdate(f"job {job.id} already exists")
        if idempotency is not None:
            held = self.idempotency.get((job.tenant, idempotency.key))
            if held is not None and held.expires_at >= idempotency.now:
                raise IdempotencyKeyUsed(held.target_id, held.fingerprint)
            self.idempotency[(job.tenant, idempotency.key)] = idempotency
        self._jobs[key] = job
        self._stream_record(None, job)
        self.writes += 1

    def create_many(self, jobs: Sequence[Job], *, resume: bool = False) -> int:
        # One chunk, stored whole or not at all: resuming, a stored chunk is skipped.
        if resume and jobs and all((job.tenant, job.id) in self._jobs for job in jobs):
            return 0
        if any((job.tenant, job.id) in self._jobs for job in jobs):
            raise ConcurrentUpdate("a job already exists")
        for job in jobs:
            self._jobs[(job.tenant, job.id)] = job
            self._stream_record(None, job)
        self.writes += 1
        return len(jobs)

    def claim_idempotency(self, tenant: str, claim: IdempotencyClaim) -> None:
        held = self.idempotency.get((tenant, claim.key))
        if held is not None and held.expires_at >= claim.now:
            raise IdempotencyKeyUsed(held.target_id, held.fingerprint)
        self.idempotency[(tenant, claim.key)] = claim

    def save(self, before: Job, after: Job) -> None:
        hook, self.before_next_save = self.before_next_save, None
        if hook is not None:
            hook()
        stored = self._jobs.get((before.tenant, before.id))
        if stored is None or stored.version != before.version:
            raise ConcurrentUpdate("the job changed since it was read")
        self._jobs[(after.tenant, after.id)] = after.model_copy(update={"version": before.version + 1})
        self._stream_record(stored, after)
        if after.batch_id and before.status.is_final != after.status.is_final:
            step = 1 if after.status.is_final else -1
            final = after if after.status.is_final else before
            counters = self.batch_counters.setdefault((after.tenant, after.batch_id), Counter())
            counters["finished"] += step
            counters["unsuccessful"] += step if final.status != JobStatus.COMPLETED else 0
        self.writes += 1

    def claim_pending(
        self, tenant: str, job_id: str, job_type: str, at: str, lease_until_ms: int, latest_sweep_at: str
    ) -> Claim:
        hook, self.before_next_save = self.before_next_save, None
        if hook is not None:
            hook()
        stored = self._jobs.get((tenant, job_id))
        if (
            stored is None
            or stored.status != JobStatus.PENDING
            or stored.attempts != 0
            or stored.type != job_type
            or (stored.sweep_at is not None and stored.sweep_at > latest_sweep_at)
        ):
            return Claim(claimed=False, job=stored)
        started = stored.start(at, lease_until_ms=lease_until_ms)
        claimed = started.model_copy(
            update={"sweep_at": stored.sweep_at or latest_sweep_at, "version": stored.version + 1}
        )
        self._jobs[(tenant, job_id)] = claimed
        self._stream_record(stored, claimed)
        self.writes += 1
        return Claim(claimed=True, job=claimed)

    def record_progress(self, job: Job, progress: Progress) -> bool:
        stored = self._jobs.get((job.tenant, job.id))
        if stored is None or stored.version != job.version:
            return False
        self._jobs[(job.tenant, job.id)] = stored.model_copy(update={"progress": progress})
        self.progress_writes += 1
        return True

    # --- the stats stream ---

    def _stream_record(self, old: Job | None, new: Job) -> None:
        """What DynamoDB's stream carries for a write of a job record (the attributes the aggregator reads)."""

        def image(job: Job) -> dict[str, Any]:
            return {
                "tenant": {"S": job.tenant},
                "type": {"S": job.type},
                "status": {"S": job.status.value},
                "updatedAt": {"S": job.updated_at},
            }

        data: dict[str, Any] = {"SequenceNumber": str(next(self._sequence)), "NewImage": image(new)}
        if old is not None:
            data["OldImage"] = image(old)
        self.stream.append({"eventName": "MODIFY" if old else "INSERT", "dynamodb": data})

    def apply_stream(self) -> int:
        """Run the stats aggregator over the stream records it has not been handed yet; returns how many changes."""
        fresh = self.stream[self._delivered :]
        records = [(stream_sequence(record), stream_change(record)) for record in fresh]
        counted = apply_stream_batch(self, "fake-stream-shard", records, now_s=0) if records else 0
        self._delivered += len(fresh)
        return counted

    def add_once(
        self, stream_shard: str, item: StatsItem, first: str, last: str, deltas: dict[str, int], now_s: int
    ) -> str | None:
        """The DAL's rule: added unless the item has this shard's records from ``first`` on (then what it has)."""
        entries = self._applied.setdefault(item, {})
        seen = entries.get(stream_shard)
        if seen is not None and seen >= first:
            return seen
        entries[stream_shard] = last
        if item.minute is None:
            self._counters.setdefault(item.tenant, Counter()).update(deltas)
        else:
            self._per_minute.setdefault((item.tenant, item.minute), Counter()).update(deltas)
        return None

    # --- reads ---

    def get(self, tenant: str, job_id: str) -> Job | None:
        return self._jobs.get((tenant, job_id))

    def list_page(
        self, tenant: str, status: JobStatus | None, job_type: str | None, limit: int, cursor: str | None
    ) -> JobPage:
        listing = f"{tenant}|{status.value if status else ''}|{job_type or ''}"
        matching = sorted(
            (
                job
                for (owner, _), job in self._jobs.items()
                if owner == tenant
                and (status is None or job.status == status)
                and (job_type is None or job.type == job_type)
            ),
            key=_created_key,
            reverse=True,
        )
        if cursor is not None:
            after_key = _decode_fake_cursor(cursor, listing)
            matching = [job for job in matching if _created_key(job) < after_key]
        page = matching[:limit]
        more = len(matching) > limit
        next_cursor = _encode_fake_cursor(listing, _created_key(page[-1])) if more and page else None
        return JobPage(jobs=page, next_cursor=next_cursor)

    def counters(self, tenant: str) -> dict[str, int]:
        self.apply_stream()  # as if the stream had no lag, like the integration tests' counters
        counts = self._counters.get(tenant, Counter())
        return {name: counts.get(name, 0) for name in (ENQUEUED_COUNTER, *STATUS_COUNTERS)}

    def throughput(
        self, tenant: str, minutes: list[str], settled_before: str | None = None
    ) -> dict[str, dict[str, int]]:
        self.settled_before = settled_before
        self.apply_stream()
        return {
            minute: {
                name: self._per_minute.get((tenant, minute), Counter()).get(name, 0) for name in THROUGHPUT_COUNTERS
            }
            for minute in minutes
        }

    def minute_items(self, tenant: str, minutes: list[str]) -> list[dict[str, Any]]:
        self.apply_stream()
        return [
            {name: {"N": str(value)} for name, value in self._per_minute.get((tenant, minute), Counter()).items()}
            for minute in minutes
        ]

    def due_for_sweep(self, shard: int, until: str, limit: int) -> list[Job]:
        due = [
            job
            for job in self._jobs.values()
            if job.sweep_at is not None
            and job.sweep_at <= until
            and sweep_shard(job.id, self.sweep_shards) == str(shard)
        ]
        return sorted(due, key=lambda job: (job.sweep_at or "", job.id))[:limit]

    # --- test helpers ---

    def all_jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def touch(self, tenant: str, job_id: str) -> None:
        """A concurrent writer: a save that changes nothing but the version."""
        job = self._jobs[(tenant, job_id)]
        self.save(job, job)

    def move_sweep_mark(self, job: Job, sweep_at: str) -> bool:
        stored = self._jobs.get((job.tenant, job.id))
        if stored is None or stored.version != job.version:
            return False
        self._jobs[(job.tenant, job.id)] = stored.model_copy(update={"sweep_at": sweep_at})
        return True


def _created_key(job: Job) -> str:
    return f"{job.created_at}#{job.id}"


def _encode_fake_cursor(listing: str, created_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([listing, created_key]).encode()).decode()


def _decode_fake_cursor(cursor: str, listing: str) -> str:
    try:
        owner, created_key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("'cursor' is not a cursor returned by this listing") from exc
    if owner != listing or not isinstance(created_key, str):
        raise InvalidCursor("'cursor' is not a cursor returned by this listing")
    return created_key


@dataclass(frozen=True)
class Sent:
    message: JobMessage
    delay_seconds: int
    priority: int = 5
    group_id: str | None = None


@dataclass(frozen=True)
class Deferred:
    source_arn: str
    receipt_handle: str
    seconds: int


@dataclass(frozen=True)
class DeadLetter:
    body: str
    reason: str
    source_arn: str = ""


@dataclass
class RecordingQueue:
    """A ``JobQueue`` that records every call; ``fail_sends`` makes ``send`` raise ``StorageError`` like SQS errors."""

    fail_sends: bool = False
    sends: list[Sent] = field(default_factory=list)
    defers: list[Deferred] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    failed_sends: int = 0

    def send(
        self, message: JobMessage, delay_seconds: int = 0, *, priority: int = 5, group_id: str | None = None
    ) -> None:
        if self.fail_sends:
            self.failed_sends += 1
            raise StorageError("SQS SendMessage failed: simulated outage")
        self.sends.append(Sent(message, delay_seconds, priority, group_id))

    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None:
        self.defers.append(Deferred(source_arn, receipt_handle, seconds))

    def dead_letter(self, body: str, reason: str, *, source_arn: str = "") -> None:
        self.dead_letters.append(DeadLetter(body, reason, source_arn))

    def sent_job_ids(self) -> list[str]:
        return [sent.message.job_id for sent in self.sends]


def message_body(job: Job) -> str:
    """The body SQS delivers for ``job`` (as the service sends it: with the type)."""
    return JobMessage(tenant=job.tenant, jobId=job.id, type=job.type).to_body()


def make_job(
    clock: FakeClock,
    *,
    job_id: str = "00000000-0000-4000-8000-000000000001",
    tenant: str = "tenant-a",
    job_type: str = "simulate",
    payload: dict[str, Any] | None = None,
    status: JobStatus = JobStatus.PENDING,
    attempts: int = 0,
    max_attempts: int = 3,
    **fields: Any,
) -> Job:
    """A job record as of ``clock`` (its history has the one entry a new job gets, unless given)."""
    now = clock.iso()
    values: dict[str, Any] = {
        "id": job_id,
        "tenant": tenant,
        "type": job_type,
        "payload": payload if payload is not None else {"target": "cat.png", "durationMs": 0, "failureRate": 0.0},
        "status": status,
        "priority": 5,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "created_at": now,
        "updated_at": now,
        "history": (HistoryEntry(status=status, at=now),),
    }
    values.update(fields)
    return Job(**values)
