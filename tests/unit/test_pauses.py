"""Paused job types: the re-check delay, the consumer's cached view, and what the consumer does with a paused job."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from functions.logic import pauses
from functions.logic.clock import parse_iso_ms
from functions.logic.consume import ConsumerSettings, MessageConsumer, Outcome
from functions.logic.pauses import PauseCheck, recheck_seconds
from functions.models.errors import InvalidType, JobDeferred
from functions.models.job import JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, make_job, message_body

SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-queue"
FIFO_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-ordered.fifo"


@dataclass
class MemoryPauseStore:
    paused: dict[tuple[str, str], int] = field(default_factory=dict)
    reads: int = 0

    def paused_since(self, tenant: str, job_type: str) -> int | None:
        self.reads += 1
        return self.paused.get((tenant, job_type))

    def paused_types(self, tenant: str, job_types: list[str]) -> dict[str, int]:
        return {name: at for (who, name), at in self.paused.items() if who == tenant and name in job_types}

    def set_paused(self, tenant: str, job_type: str, paused: bool, now_ms: int) -> None:
        if paused:
            self.paused.setdefault((tenant, job_type), now_ms)
        else:
            self.paused.pop((tenant, job_type), None)


@pytest.mark.parametrize(("paused_for_s", "expected"), [(0, 2), (10, 2), (35, 3), (300, 30), (600, 60), (86_400, 60)])
def test_the_recheck_delay_is_a_tenth_of_the_pause_from_2_to_60_seconds(paused_for_s: int, expected: int) -> None:
    assert recheck_seconds(1_000_000, 1_000_000 + paused_for_s * 1000) == expected


def test_the_check_reads_the_store_at_most_once_per_ttl_per_tenant_and_type() -> None:
    store = MemoryPauseStore({("a", "fetch"): 5})
    now = [100.0]
    check = PauseCheck(store, ttl_seconds=2, monotonic=lambda: now[0])
    assert check.paused_since("a", "fetch") == 5
    store.paused.clear()
    assert check.paused_since("a", "fetch") == 5  # cached
    assert check.paused_since("b", "fetch") is None
    assert store.reads == 2
    now[0] += 2.5
    assert check.paused_since("a", "fetch") is None
    assert store.reads == 3


def test_set_paused_answers_type_and_state_and_refuses_unknown_types() -> None:
    store = MemoryPauseStore()
    assert pauses.set_paused(store, "a", "fetch", True, 7) == {"type": "fetch", "paused": True}
    assert {t["name"]: t["paused"] for t in pauses.job_types_for(store, "a")}["fetch"] is True
    assert {t["name"]: t["paused"] for t in pauses.job_types_for(store, "b")}["fetch"] is False
    with pytest.raises(InvalidType):
        pauses.set_paused(store, "a", "nope", True, 7)


def _consumer(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, store: MemoryPauseStore
) -> MessageConsumer:
    return MessageConsumer(
        repo=repo,
        queue=queue,
        clock=clock,
        settings=ConsumerSettings(1, 4),
        pauses=PauseCheck(store, ttl_seconds=0),
    )


def test_a_paused_jobs_message_is_sent_again_later_without_an_attempt(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a pending job of a type paused 100 s ago, its sweep mark due in 2 minutes
    store = MemoryPauseStore({("tenant-a", "simulate"): clock() - 100_000})
    job = make_job(clock, sweep_at=clock.iso(120))
    repo.create(job)
    consumer = _consumer(repo, queue, clock, store)

    # When its message arrives
    outcome = consumer.handle(message_body(job), SOURCE_ARN, "r", 30_000)

    # Then a fresh copy comes back in 10 s (a tenth of the pause) and the job is untouched but for its mark
    assert outcome == Outcome.THROTTLED
    assert [(s.message.job_id, s.delay_seconds) for s in queue.sends] == [(job.id, 10)]
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.version) == (JobStatus.PENDING, 0, job.version)
    assert stored.sweep_at is not None and parse_iso_ms(stored.sweep_at) == clock() + pauses.MARK_AHEAD_SECONDS * 1000

    # When it is resumed, the next copy runs it
    store.paused.clear()
    assert consumer.handle(message_body(job), SOURCE_ARN, "r2", 30_000) == Outcome.COMPLETED


def test_on_the_ordered_lane_the_message_itself_waits(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    store = MemoryPauseStore({("tenant-a", "simulate"): clock()})
    job = make_job(clock)
    repo.create(job)
    with pytest.raises(JobDeferred):
        _consumer(repo, queue, clock, store).handle(message_body(job), FIFO_ARN, "r", 30_000)
    assert [(d.receipt_handle, d.seconds) for d in queue.defers] == [("r", 2)]
    assert queue.sends == []
    stored = repo.get(job.tenant, job.id)
    assert stored is not None and stored.attempts == 0


def test_another_tenants_pause_does_not_hold_the_job(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    store = MemoryPauseStore({("tenant-b", "simulate"): clock()})
    job = make_job(clock)
    repo.create(job)
    assert _consumer(repo, queue, clock, store).handle(message_body(job), SOURCE_ARN, "r", 30_000) == Outcome.COMPLETED
