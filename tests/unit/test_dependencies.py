"""Job dependencies' logic (functions/logic/dependencies.py) against fakes: the gate at creation, reading the stream,
and settling edges (release, cancel, idempotence, a dependent not stored yet)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from functions.dal.dependencies import Edge, Resolution
from functions.logic.dependencies import Settler, gate, stream_events
from functions.models.errors import InvalidOption
from functions.models.job import HistoryEntry, Job, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue

TENANT = "tenant-a"


class FakeDependencyStore:
    """Edges and markers in dicts; ``resolve`` decrements the dependent in ``repo`` as the transaction does."""

    def __init__(self, repo: InMemoryJobsRepository) -> None:
        self.repo = repo
        self.edge_state: dict[tuple[str, str, str], bool] = {}  # (tenant, dependency, dependent) -> resolved
        self.marked: set[tuple[str, str]] = set()
        self.transactions = 0

    def jobs(self, tenant: str, job_ids: Sequence[str]) -> dict[str, Job]:
        found = {job_id: self.repo.get(tenant, job_id) for job_id in job_ids}
        return {job_id: job for job_id, job in found.items() if job is not None}

    def markers(self, keys: Any) -> dict[tuple[str, str], frozenset[int]]:
        return {key: frozenset({0}) for key in keys if key in self.marked}

    def add_edges(self, tenant: str, dependent_id: str, dependency_ids: Sequence[str], now: str) -> None:
        for dependency_id in dependency_ids:
            self.edge_state.setdefault((tenant, dependency_id, dependent_id), False)
            self.marked.add((tenant, dependency_id))

    def dependents(self, tenant: str, dependency_id: str, shards: Any) -> list[Edge]:
        return [
            Edge(dependency, dependent, resolved)
            for (owner, dependency, dependent), resolved in self.edge_state.items()
            if (owner, dependency) == (tenant, dependency_id)
        ]

    def edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> list[Edge]:
        return [
            Edge(dependency, dependent, self.edge_state[(tenant, dependency, dependent)])
            for dependency, dependent in pairs
            if (tenant, dependency, dependent) in self.edge_state
        ]

    def resolve(self, tenant: str, dependency_id: str, dependent_id: str, now: str) -> Resolution:
        self.transactions += 1
        if self.edge_state.get((tenant, dependency_id, dependent_id), True):
            return Resolution.ALREADY
        job = self.repo.get(tenant, dependent_id)
        if job is None or job.status != JobStatus.WAITING or (job.waiting_on or 0) <= 0:
            return Resolution.NOT_WAITING
        self.edge_state[(tenant, dependency_id, dependent_id)] = True
        self.repo._jobs[(tenant, dependent_id)] = job.model_copy(
            update={"waiting_on": (job.waiting_on or 0) - 1, "version": job.version + 1}
        )
        return Resolution.RESOLVED

    def delete_edges(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> None:
        for dependency_id, dependent_id in pairs:
            self.edge_state.pop((tenant, dependency_id, dependent_id), None)


@pytest.fixture
def repo() -> InMemoryJobsRepository:
    return InMemoryJobsRepository()


@pytest.fixture
def store(repo: InMemoryJobsRepository) -> FakeDependencyStore:
    return FakeDependencyStore(repo)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def settler(store: FakeDependencyStore, repo: InMemoryJobsRepository, queue: RecordingQueue) -> Settler:
    return Settler(store, repo, queue, FakeClock(), pending_grace_seconds=30, threads=1)


def a_job(job_id: str, status: JobStatus = JobStatus.PENDING) -> Job:
    return Job(
        id=job_id,
        tenant=TENANT,
        type="simulate",
        payload={},
        status=status,
        priority=5,
        attempts=0,
        max_attempts=3,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        history=(HistoryEntry(status=status, at="2026-01-01T00:00:00.000Z"),),
    )


def stored(repo: InMemoryJobsRepository, job_id: str, status: JobStatus = JobStatus.PENDING) -> Job:
    job = a_job(job_id, status)
    repo.create(job)
    return job


def image(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": {"S": job.id},
        "tenant": {"S": job.tenant},
        "type": {"S": job.type},
        "status": {"S": job.status.value},
    }
    if job.depends_on:
        data["dependsOn"] = {"L": [{"S": dependency} for dependency in job.depends_on]}
    return data


def record(old: Job | None, new: Job) -> dict[str, Any]:
    data: dict[str, Any] = {"NewImage": image(new)}
    if old is not None:
        data["OldImage"] = image(old)
    return {"dynamodb": data}


def create_dependent(repo: InMemoryJobsRepository, store: FakeDependencyStore, job_id: str, *deps: str) -> Job:
    job = gate(store, deps)(a_job(job_id))
    repo.create(job)
    return job


# --- the gate ---


def test_unknown_ids_are_invalid_option_naming_them_and_nothing_is_written(
    repo: InMemoryJobsRepository, store: FakeDependencyStore
) -> None:
    stored(repo, "known")
    with pytest.raises(InvalidOption) as refused:
        gate(store, ("known", "nope", "other#tenant"))(a_job("new"))
    assert refused.value.details == {"field": "dependsOn", "unknownIds": ["nope", "other#tenant"]}
    assert "nope" in refused.value.message and "dependsOn" in refused.value.message
    assert store.edge_state == {}


def test_completed_dependencies_are_met_and_only_the_others_get_edges(
    repo: InMemoryJobsRepository, store: FakeDependencyStore
) -> None:
    stored(repo, "done", JobStatus.COMPLETED)
    stored(repo, "running", JobStatus.PROCESSING)
    job = gate(store, ("done", "running"))(a_job("new"))
    assert (job.status, job.waiting_on, job.depends_on, job.sweep_at) == (
        JobStatus.WAITING,
        1,
        ("done", "running"),
        None,
    )
    assert [entry.status for entry in job.history] == [JobStatus.WAITING]
    assert set(store.edge_state) == {(TENANT, "running", "new")}


def test_a_job_whose_dependencies_all_completed_is_created_pending(
    repo: InMemoryJobsRepository, store: FakeDependencyStore
) -> None:
    stored(repo, "done", JobStatus.COMPLETED)
    job = gate(store, ("done",))(a_job("new"))
    assert (job.status, job.waiting_on, job.depends_on) == (JobStatus.PENDING, 0, ("done",))
    assert store.edge_state == {}


# --- reading the stream ---


def test_the_stream_events_are_final_moves_and_waiting_creations_only() -> None:
    waiting = a_job("w", JobStatus.WAITING).model_copy(update={"depends_on": ("a", "b")})
    pending, processing = a_job("p"), a_job("p", JobStatus.PROCESSING)
    completed = a_job("p", JobStatus.COMPLETED)
    records = [
        record(None, waiting),  # a waiting job created
        record(None, pending),  # a plain job created: nothing to settle
        record(pending, processing),  # not final
        record(processing, completed),  # final
        record(completed, completed),  # a write keeping the final status (a callback's record)
        record(waiting, waiting),  # waitingOn moved
        {"dynamodb": {"OldImage": image(completed)}},  # expired
        {"dynamodb": {"NewImage": {"pk": {"S": "tenant-a#batch#1"}}}},  # not a job
    ]
    events = stream_events(records)
    assert [(event.job_id, event.status, event.depends_on) for event in events] == [
        ("w", JobStatus.WAITING, ("a", "b")),
        ("p", JobStatus.COMPLETED, ()),
    ]


# --- settling ---


def test_the_last_completed_dependency_releases_and_sends_the_job_once(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue, settler: Settler
) -> None:
    first, second = stored(repo, "a"), stored(repo, "b")
    dependent = create_dependent(repo, store, "c", "a", "b")

    # When a completes: c still waits for b
    done_a = first.model_copy(update={"status": JobStatus.COMPLETED})
    assert settler.settle_stream([record(first, done_a)]) == 1
    assert repo.get(TENANT, "c").status == JobStatus.WAITING  # type: ignore[union-attr]
    assert repo.get(TENANT, "c").waiting_on == 1  # type: ignore[union-attr]
    assert queue.sent_job_ids() == []

    # When b completes, and the same stream batch is delivered again
    done_b = second.model_copy(update={"status": JobStatus.COMPLETED})
    batch = [record(second, done_b), record(None, dependent)]
    settler.settle_stream(batch)
    settler.settle_stream(batch)

    # Then c is pending (released once, with a sweep mark) and sent once
    released = repo.get(TENANT, "c")
    assert released is not None
    assert (released.status, released.waiting_on) == (JobStatus.PENDING, 0)
    assert [entry.status for entry in released.history] == [JobStatus.WAITING, JobStatus.PENDING]
    assert released.sweep_at is not None
    assert queue.sent_job_ids() == ["c"]


def test_a_failed_dependency_cancels_the_waiting_job_with_its_id_and_status(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue, settler: Settler
) -> None:
    first = stored(repo, "a", JobStatus.PROCESSING)
    create_dependent(repo, store, "b", "a")
    settler.settle_stream([record(first, first.model_copy(update={"status": JobStatus.FAILED}))])
    cancelled = repo.get(TENANT, "b")
    assert cancelled is not None
    assert (cancelled.status, cancelled.error) == (JobStatus.CANCELLED, "dependency a failed")
    assert cancelled.history[-1].error == "dependency a failed"
    assert (TENANT, "a", "b") not in store.edge_state  # done with: deleted
    assert queue.sent_job_ids() == []


def test_a_dependency_final_before_its_dependent_was_stored_is_settled_by_the_creation(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue, settler: Settler
) -> None:
    # Given b's edge exists but b's record does not yet, when a's completion is handled
    first = stored(repo, "a")
    waiting = gate(store, ("a",))(a_job("b"))
    done = first.model_copy(update={"status": JobStatus.COMPLETED})
    repo._jobs[(TENANT, "a")] = done
    settler.settle_stream([record(first, done)])
    # Then the edge is left for the creation (no record to count it on)
    assert store.edge_state[(TENANT, "a", "b")] is False
    # When b's record is written and its creation handled, it is released
    repo.create(waiting)
    settler.settle_stream([record(None, waiting)])
    assert repo.get(TENANT, "b").status == JobStatus.PENDING  # type: ignore[union-attr]
    assert queue.sent_job_ids() == ["b"]


def test_a_cancelled_dependent_is_left_cancelled_and_its_edge_deleted(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue, settler: Settler
) -> None:
    first = stored(repo, "a")
    dependent = create_dependent(repo, store, "b", "a")
    repo.save(dependent, dependent.cancel("2026-01-01T00:00:01.000Z"))
    settler.settle_stream([record(first, first.model_copy(update={"status": JobStatus.COMPLETED}))])
    assert repo.get(TENANT, "b").status == JobStatus.CANCELLED  # type: ignore[union-attr]
    assert (TENANT, "a", "b") not in store.edge_state
    assert queue.sent_job_ids() == []


def test_a_crash_between_resolving_and_releasing_is_repaired_by_the_next_delivery(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue, settler: Settler
) -> None:
    # Given the edge was resolved (waitingOn 0) but the release never happened
    first = stored(repo, "a")
    create_dependent(repo, store, "b", "a")
    store.resolve(TENANT, "a", "b", "now")
    # When the dependency's final record is delivered again
    settler.settle_stream([record(first, first.model_copy(update={"status": JobStatus.COMPLETED}))])
    # Then the job is released without counting the edge twice
    released = repo.get(TENANT, "b")
    assert released is not None and (released.status, released.waiting_on) == (JobStatus.PENDING, 0)
    assert queue.sent_job_ids() == ["b"]


def test_many_edges_are_settled_on_threads(
    repo: InMemoryJobsRepository, store: FakeDependencyStore, queue: RecordingQueue
) -> None:
    first = stored(repo, "a")
    for index in range(40):
        create_dependent(repo, store, f"d{index}", "a")
    threaded = Settler(store, repo, queue, FakeClock(), pending_grace_seconds=30, threads=8)
    assert threaded.settle_stream([record(first, first.model_copy(update={"status": JobStatus.CANCELLED}))]) == 40
    assert {repo.get(TENANT, f"d{index}").error for index in range(40)} == {"dependency a cancelled"}  # type: ignore[union-attr]
