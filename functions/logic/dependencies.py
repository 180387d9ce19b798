"""Job dependencies (``dependsOn``): a job ``waiting`` until every job it names is ``completed``, then ``pending``; a
dependency that ends ``failed`` or ``cancelled`` cancels it with ``"dependency <id> <status>"``, and so on down the
chain (a cancelled dependent is a cancelled dependency of its own dependents).

Creating (``gate``: ``submit``'s ``prepare``, before the record is stored): the named ids are read in one
consistent batched read (a missing or expired id, or another tenant's, is ``INVALID_OPTION``); those already
completed are met; for the others the edges are written, then the record, ``waiting`` with ``waitingOn`` = how many
are not met (``pending`` at once when none is left).

Settling (``Settler.settle_stream``, from the jobs table's stream): two events settle edges.
- A job's move into a final status: its edges (in the shards its marker names) are settled with that status.
- A ``waiting`` job's creation: its dependencies are read, and those already final settle their edges. This is
  what closes the race between a dependency ending and its dependent being written: the dependency's own event may
  have been handled before the edges or the record existed, but the creation's event is handled after the record
  was written, and the edges before it; whichever event comes second sees the other side. No wake-up is lost.

Every step is idempotent, so a stream batch that failed half-way is simply handled again: an edge is resolved
once (dal/dependencies.py), a release or a cancel is a conditional write that only a ``waiting`` job takes, and a
resolved edge whose dependent is still ``waiting`` at ``waitingOn`` 0 is released again ("ensure"). An edge whose
dependent no longer waits is deleted; one whose dependent is not stored yet is kept for the creation's event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from functions.dal.dependencies import Edge, Resolution
from functions.dal.jobs_repository import JobsRepository
from functions.logic import callbacks
from functions.logic.clock import Clock, iso
from functions.logic.enqueue import send_when_due
from functions.logic.lanes import JobQueue
from functions.logic.transitions import read_decide_write
from functions.models.errors import InvalidOption, shown
from functions.models.job import HistoryEntry, Job, JobStatus

logger = Logger(child=True)

_MAX_RACE_RETRIES = 10
# Edges settled at once by one stream invocation: 1,000 dependents of one job settle in a few seconds, well inside
# the function's timeout (each edge is a transaction, a read and a write, and a message).
SETTLE_THREADS = 16


class DependencyStore(Protocol):
    def jobs(self, tenant: str, job_ids: Sequence[str]) -> dict[str, Job]: ...
    def markers(self, keys: Any) -> dict[tuple[str, str], frozenset[int]]: ...
    def add_edges(self, tenant: str, dependent_id: str, dependency_ids: Sequence[str], now: str) -> None: ...
    def dependents(self, tenant: str, dependency_id: str, shards: Iterable[int]) -> list[Edge]: ...
    def edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> list[Edge]: ...
    def resolve(self, tenant: str, dependency_id: str, dependent_id: str, now: str) -> Resolution: ...
    def delete_edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> None: ...


def dependency_error(dependency_id: str, status: JobStatus) -> str:
    return f"dependency {dependency_id} {status.value}"


# --- creating ---


def gate(store: DependencyStore, depends_on: Sequence[str]) -> Callable[[Job], Job]:
    """``submit``'s ``prepare`` for a job with ``depends_on``: validates the ids and writes the edges."""

    def prepare(job: Job) -> Job:
        found = store.jobs(job.tenant, depends_on)
        unknown = [job_id for job_id in depends_on if job_id not in found]
        if unknown:
            shown_ids = ", ".join(shown(job_id) for job_id in unknown[:10])
            raise InvalidOption(
                f"'dependsOn': no job {shown_ids} of this tenant", details={"field": "dependsOn", "unknownIds": unknown}
            )
        unmet = [job_id for job_id in depends_on if found[job_id].status != JobStatus.COMPLETED]
        dependent = job.model_copy(update={"depends_on": tuple(depends_on), "waiting_on": len(unmet)})
        if not unmet:
            return dependent  # every dependency already completed: pending, sent as any new job
        store.add_edges(job.tenant, job.id, unmet, job.created_at)
        return dependent.model_copy(
            update={
                "status": JobStatus.WAITING,
                "history": (HistoryEntry(status=JobStatus.WAITING, at=job.created_at),),
                # Nothing for the sweeper: the stream releases it (see the module's docstring).
                "sweep_at": None,
            }
        )

    return prepare


# --- settling ---


@dataclass(frozen=True)
class StreamEvent:
    """What a record of the jobs table's stream means here: a job that became final, or a new waiting job."""

    tenant: str
    job_id: str
    status: JobStatus
    depends_on: tuple[str, ...] = ()


def stream_events(records: Sequence[dict[str, Any]]) -> list[StreamEvent]:
    """The stream records (Lambda's event shape) that settle edges: moves into a final status, creations of
    waiting jobs. Anything else (another item, a write keeping the status, an expiry) is left out."""
    events: list[StreamEvent] = []
    for record in records:
        data = record.get("dynamodb", {})
        old, new = data.get("OldImage") or {}, data.get("NewImage") or {}
        if not new or "type" not in new or "status" not in new or "id" not in new or "tenant" not in new:
            continue
        status = JobStatus(new["status"]["S"])
        before = old.get("status", {}).get("S")
        if status.is_final and before != status.value:
            events.append(StreamEvent(new["tenant"]["S"], new["id"]["S"], status))
        elif status == JobStatus.WAITING and not old:
            depends_on = tuple(entry["S"] for entry in new.get("dependsOn", {}).get("L", []))
            events.append(StreamEvent(new["tenant"]["S"], new["id"]["S"], status, depends_on))
    return events


class Settler:
    def __init__(
        self,
        store: DependencyStore,
        repo: JobsRepository,
        queue: JobQueue,
        clock: Clock,
        pending_grace_seconds: int,
        after_final: Callable[[Job], None] | None = None,
        threads: int = SETTLE_THREADS,
    ) -> None:
        self._store = store
        self._repo = repo
        self._queue = queue
        self._clock = clock
        self._grace_ms = pending_grace_seconds * 1000
        self._after_final = after_final
        self._threads = threads

    def settle_stream(self, records: Sequence[dict[str, Any]]) -> int:
        """Settle every edge the stream records touch; returns how many edges were looked at. Raises (and the
        whole batch is delivered again) if any step failed: each is idempotent."""
        events = stream_events(records)
        finals = [event for event in events if event.status.is_final]
        marked = self._store.markers((event.tenant, event.job_id) for event in finals) if finals else {}
        work: list[tuple[str, JobStatus, Edge]] = []
        for event in finals:
            shards = marked.get((event.tenant, event.job_id))
            if shards:
                edges = self._store.dependents(event.tenant, event.job_id, shards)
                work += [(event.tenant, event.status, edge) for edge in edges]
        created = [event for event in events if event.status == JobStatus.WAITING]
        for tenant in dict.fromkeys(event.tenant for event in created):
            work += self._created(tenant, [event for event in created if event.tenant == tenant])
        # An edge may come from both sides in one batch (its dependency's end and its dependent's creation): once.
        unique: dict[tuple[str, str, str], tuple[str, JobStatus, Edge]] = {}
        for item in work:
            unique.setdefault((item[0], item[2].dependency_id, item[2].dependent_id), item)
        work = list(unique.values())
        if not work:
            return 0
        if len(work) == 1 or self._threads <= 1:
            done = [self.settle_edge(*item) for item in work]
        else:
            with ThreadPoolExecutor(max_workers=min(self._threads, len(work))) as pool:
                # list(): every failure is raised here, after the others have run.
                done = list(pool.map(lambda item: self.settle_edge(*item), work))
        # Edges whose dependent no longer waits are deleted in batches (the resolved ones expire by themselves).
        for tenant in dict.fromkeys(tenant for tenant, _, _ in work):
            pairs = [
                (edge.dependency_id, edge.dependent_id)
                for (owner, _, _), edge in zip(work, done, strict=True)
                if edge and owner == tenant
            ]
            if pairs:
                self._store.delete_edges(tenant, pairs)
        return len(work)

    def _created(self, tenant: str, events: Sequence[StreamEvent]) -> list[tuple[str, JobStatus, Edge]]:
        """New waiting jobs of one tenant: the edges from those of their dependencies already final (one batched
        read of the dependencies, one of the edges, for the whole stream batch)."""
        named = list(dict.fromkeys(job_id for event in events for job_id in event.depends_on))
        dependencies = self._store.jobs(tenant, named)
        final = {job_id: job.status for job_id, job in dependencies.items() if job.status.is_final}
        pairs = [(job_id, event.job_id) for event in events for job_id in event.depends_on if job_id in final]
        if not pairs:
            return []
        return [(tenant, final[edge.dependency_id], edge) for edge in self._store.edges(tenant, pairs)]

    def settle_edge(self, tenant: str, dependency_status: JobStatus, edge: Edge) -> Edge | None:
        """The dependency of ``edge`` is final in ``dependency_status``: count it on the dependent (releasing it
        when it was the last), or cancel the dependent. Returns the edge when it is done with (its dependent is
        stored and no longer waits), to be deleted. A dependent not stored yet keeps its edge: its creation is in
        flight, and its own stream record settles the edge."""
        if dependency_status == JobStatus.COMPLETED:
            if not edge.resolved:
                outcome = self._store.resolve(tenant, edge.dependency_id, edge.dependent_id, iso(self._clock()))
                if outcome == Resolution.NOT_WAITING:
                    return edge if self._repo.get(tenant, edge.dependent_id) is not None else None
            self.release_if_met(tenant, edge.dependent_id)
            return None
        error = dependency_error(edge.dependency_id, dependency_status)
        return edge if self._cancel_waiting(tenant, edge.dependent_id, error) else None

    def release_if_met(self, tenant: str, job_id: str) -> Job | None:
        """Release the job if it is waiting with nothing left to wait for, and send it as a new job is sent."""

        def release(job: Job, now: int) -> Job | None:
            if job.status != JobStatus.WAITING or (job.waiting_on or 0) > 0:
                return None
            return job.release(iso(now), sweep_at=iso(now + self._grace_ms))

        released = read_decide_write(
            self._repo, tenant, job_id, self._clock, release, attempts=_MAX_RACE_RETRIES, on_missing=lambda: None
        )
        if released is not None:
            logger.info("dependencies met; job released", extra={"job_id": job_id})
            send_when_due(self._queue, released, self._clock())
        return released

    def _cancel_waiting(self, tenant: str, job_id: str, error: str) -> bool:
        """Cancel the job with ``error`` if it is still waiting (its own dependents follow from its stream event);
        False if there is no such job (yet)."""
        grace_seconds = self._grace_ms // 1000
        missing: list[bool] = []

        def cancel(job: Job, now: int) -> Job | None:
            if job.status != JobStatus.WAITING:
                return None
            return callbacks.arm(job.cancel(iso(now), error), now, grace_seconds)

        cancelled = read_decide_write(
            self._repo,
            tenant,
            job_id,
            self._clock,
            cancel,
            attempts=_MAX_RACE_RETRIES,
            on_missing=lambda: missing.append(True),
        )
        if cancelled is not None:
            logger.info("dependency not completed; job cancelled", extra={"job_id": job_id, "error": error})
            callbacks.announce_final(self._queue, cancelled, self._after_final, event="a dependency's end")
        return not missing
