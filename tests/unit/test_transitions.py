"""The read-decide-write loop every status change goes through (logic/transitions.py)."""

from __future__ import annotations

import pytest

from functions.logic.transitions import read_decide_write
from functions.models.errors import ConcurrentUpdate, NotFound
from functions.models.job import Job, JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, make_job


def _cancel(job: Job, now: int) -> Job:
    return job.cancel(f"at {now}")


def test_the_decision_is_written_on_the_version_read(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a pending job
    job = make_job(clock)
    repo.create(job)
    # When it is cancelled through the loop
    written = read_decide_write(repo, job.tenant, job.id, clock, _cancel, attempts=3)
    # Then the decision, made at the clock's time, is stored with the next version and returned as stored
    assert written.status == JobStatus.CANCELLED
    assert written.updated_at == f"at {clock()}"
    assert written == repo.get(job.tenant, job.id)
    assert written.version == job.version + 1


def test_a_lost_race_is_decided_again_from_a_fresh_read(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a job that another writer changes between our read and our write
    job = make_job(clock)
    repo.create(job)
    repo.before_next_save = lambda: repo.save(job, job.model_copy(update={"priority": 9}))
    seen: list[int] = []
    lost: list[Job] = []

    def decide(current: Job, now: int) -> Job:
        seen.append(current.priority)
        return current.cancel("now")

    # When the loop runs
    written = read_decide_write(repo, job.tenant, job.id, clock, decide, attempts=3, lost_race=lost.append)
    # Then the first decision was given back, the second was made on the other writer's record, and it stands
    assert seen == [5, 9]
    assert [decision.status for decision in lost] == [JobStatus.CANCELLED]
    assert (written.status, written.priority, written.version) == (JobStatus.CANCELLED, 9, job.version + 2)


def test_it_gives_up_after_the_attempts_given(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    # Given a job that changes before every one of our writes
    job = make_job(clock)
    repo.create(job)
    decisions = 0

    def decide(current: Job, now: int) -> Job:
        nonlocal decisions
        decisions += 1
        repo.before_next_save = lambda: repo.save(current, current.model_copy(update={"priority": decisions}))
        return current.cancel("now")

    # Then, after two decisions, the loop stops with ConcurrentUpdate and the job is not cancelled
    with pytest.raises(ConcurrentUpdate, match="kept changing"):
        read_decide_write(repo, job.tenant, job.id, clock, decide, attempts=2)
    assert decisions == 2
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    assert stored.status == JobStatus.PENDING


def test_deciding_nothing_writes_nothing(repo: InMemoryJobsRepository, clock: FakeClock) -> None:
    job = make_job(clock)
    repo.create(job)
    writes = repo.writes
    assert read_decide_write(repo, job.tenant, job.id, clock, lambda current, now: None, attempts=3) is None
    assert repo.writes == writes


def test_a_missing_job_is_not_found_unless_the_caller_handles_it(
    repo: InMemoryJobsRepository, clock: FakeClock
) -> None:
    with pytest.raises(NotFound, match="job 'nope' not found"):
        read_decide_write(repo, "tenant-a", "nope", clock, _cancel, attempts=3)
    missing: list[str] = []
    result = read_decide_write(
        repo, "tenant-a", "nope", clock, _cancel, attempts=3, on_missing=lambda: missing.append("nope")
    )
    assert (result, missing) == (None, ["nope"])
