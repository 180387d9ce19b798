"""The sweeper's reconciler: an in-flight job with no message left is re-sent, or ended as failed, exactly once.

A message leaves the queue behind its job's back when SQS moves it to the DLQ after maxReceiveCount receives
(timeouts, storage errors, lease waits) or when something deletes it. The consumer keeps an in-flight job's sweep
mark due a grace after its lease or its next attempt; these tests drive the real consumer, lose its message, and
let the sweeper find the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from functions.logic.consume import ConsumerSettings, JobDeferred, MessageConsumer, Outcome
from functions.logic.enqueue import EnqueueSettings, JobSpec, submit
from functions.logic.job_types import JobContext
from functions.logic.sweep import SweepSettings, sweep
from functions.models.errors import RetryableJobError
from functions.models.job import Callback, Job, JobStatus
from functions.settings import Settings
from tests.unit.conftest import RegisterJobType
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, message_body

GRACE = 120
IN_FLIGHT_GRACE = 900
GIVE_UP = 86_400
REMAINING_MS = 30_000  # the invocation's time left: the attempt's lease
SETTINGS = SweepSettings(
    sweep_shards=4,
    pending_grace_seconds=GRACE,
    release_ahead_seconds=900,
    in_flight_grace_seconds=IN_FLIGHT_GRACE,
    orphan_give_up_seconds=GIVE_UP,
)
TENANT = "tenant-a"


class Killed(BaseException):
    """The invocation dies mid-attempt (a timeout, a crash): nothing records the attempt's outcome."""


class Behaviour:
    def __init__(self) -> None:
        self.mode = "kill"
        self.runs = 0

    def handler(self, payload: Any, ctx: JobContext) -> str:
        self.runs += 1
        if self.mode == "kill":
            raise Killed()
        if self.mode == "fail":
            raise RetryableJobError("downstream unavailable")
        return "done"


@pytest.fixture
def behaviour(register_job_type: RegisterJobType) -> Behaviour:
    behaviour = Behaviour()
    register_job_type("flaky", behaviour.handler)
    return behaviour


def _consumer(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock) -> MessageConsumer:
    return MessageConsumer(
        repo=repo,
        queue=queue,
        clock=clock,
        settings=ConsumerSettings(1, 4),
        job_settings=Settings(pending_grace_seconds=GRACE, in_flight_grace_seconds=IN_FLIGHT_GRACE),
    )


def _enqueue(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, **options: Any) -> Job:
    spec = JobSpec(type="flaky", payload={}, **options)
    settings = EnqueueSettings(pending_grace_seconds=GRACE, release_ahead_seconds=900)
    return submit(spec, TENANT, repo, queue, clock, settings).job


def _killed_mid_attempt(repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, job: Job) -> Job:
    with pytest.raises(Killed):
        _consumer(repo, queue, clock).handle(message_body(job), "arn", "receipt", REMAINING_MS)
    return _reload(repo, job)


def _reload(repo: InMemoryJobsRepository, job: Job) -> Job:
    stored = repo.get(job.tenant, job.id)
    assert stored is not None
    return stored


def _statuses(job: Job) -> list[str]:
    return [entry.status.value for entry in job.history]


def test_the_consumer_keeps_an_in_flight_mark_due_a_grace_after_the_lease_or_the_next_attempt(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a job claimed by a consumer that then dies
    job = _killed_mid_attempt(repo, queue, clock, _enqueue(repo, queue, clock))
    # Then while it is processing, it keeps the earlier mark it had while pending (no index write)
    assert job.status == JobStatus.PROCESSING and job.lease_until_ms == clock() + REMAINING_MS
    assert job.sweep_at == clock.iso(GRACE)
    # And when that mark comes due, the sweeper moves it a grace past the lease, without touching the version
    clock.advance(GRACE)
    assert sweep(repo, queue, clock, SETTINGS).orphans_resent == 0
    moved = _reload(repo, job)
    assert moved.sweep_at == clock.iso(REMAINING_MS / 1000 - GRACE + IN_FLIGHT_GRACE) and moved.version == job.version
    job = moved
    # And once an attempt failed, a grace after the next attempt's time at the latest
    behaviour.mode = "fail"
    with pytest.raises(JobDeferred):
        _consumer(repo, queue, clock).handle(message_body(job), "arn", "receipt", REMAINING_MS)
    retrying = _reload(repo, job)
    assert retrying.status == JobStatus.RETRYING and retrying.next_attempt_at_ms is not None
    assert retrying.sweep_at == job.sweep_at  # earlier than the next attempt + grace: kept
    # And a final job carries none
    behaviour.mode = "ok"
    clock.advance(ms=retrying.next_attempt_at_ms - clock())
    assert _consumer(repo, queue, clock).handle(message_body(job), "arn", "r", REMAINING_MS) is Outcome.COMPLETED
    assert _reload(repo, job).sweep_at is None


def test_a_dead_attempt_whose_message_is_gone_is_resent_once_its_lease_is_long_expired(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a consumer killed mid-attempt, and its message then moved to the DLQ by its receive count
    job = _killed_mid_attempt(repo, queue, clock, _enqueue(repo, queue, clock))
    sent_before = len(queue.sends)
    # When the sweeper runs while the lease, and the grace after it, have not passed
    clock.advance(REMAINING_MS / 1000 + IN_FLIGHT_GRACE - 1)
    # Then it leaves the job to SQS's own redelivery
    assert sweep(repo, queue, clock, SETTINGS).orphans_resent == 0 and len(queue.sends) == sent_before
    # When it runs once they have
    clock.advance(1)
    report = sweep(repo, queue, clock, SETTINGS)
    # Then it re-sends the job once, and looks again later rather than at every run
    assert report.orphans_resent == 1 and queue.sent_job_ids()[sent_before:] == [job.id]
    assert sweep(repo, queue, clock, SETTINGS).orphans_resent == 0
    # And the re-sent message runs the next attempt, recording the dead one
    behaviour.mode = "ok"
    assert _consumer(repo, queue, clock).handle(message_body(job), "arn", "r", REMAINING_MS) is Outcome.COMPLETED
    done = _reload(repo, job)
    assert _statuses(done) == ["pending", "processing", "retrying", "processing", "completed"]
    assert done.attempts == 2 and done.sweep_at is None


def test_a_retrying_job_whose_message_reached_the_dlq_is_resent(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a job whose first attempt failed, and whose message then went to the DLQ
    behaviour.mode = "fail"
    job = _enqueue(repo, queue, clock)
    with pytest.raises(JobDeferred):
        _consumer(repo, queue, clock).handle(message_body(job), "arn", "receipt", REMAINING_MS)
    retrying = _reload(repo, job)
    assert retrying.next_attempt_at_ms is not None
    # When the sweeper runs a grace after its next attempt was due
    clock.advance(ms=retrying.next_attempt_at_ms - clock() + IN_FLIGHT_GRACE * 1000)
    report = sweep(repo, queue, clock, SETTINGS)
    # Then it is re-sent, and its next attempt completes it
    assert report.orphans_resent == 1 and queue.sent_job_ids()[-1] == job.id
    behaviour.mode = "ok"
    assert _consumer(repo, queue, clock).handle(message_body(job), "arn", "r", REMAINING_MS) is Outcome.COMPLETED
    assert _statuses(_reload(repo, job)) == ["pending", "processing", "retrying", "processing", "completed"]


def test_a_dead_last_attempt_whose_message_is_gone_ends_failed_exactly_once(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a job on its last attempt, killed mid-attempt, with a callback, and its message gone
    job = _enqueue(repo, queue, clock, max_attempts=1, callback_url="https://example.com/hook")
    job = _killed_mid_attempt(repo, queue, clock, job)
    clock.advance(REMAINING_MS / 1000 + IN_FLIGHT_GRACE)
    # When the sweeper runs, twice
    first = sweep(repo, queue, clock, SETTINGS)
    second = sweep(repo, queue, clock, SETTINGS)
    # Then the job is failed once, saying why, with its callback sent and no further run
    assert (first.orphans_failed, first.orphans_resent, second.orphans_failed) == (1, 0, 0)
    failed = _reload(repo, job)
    assert failed.status == JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and "did not finish" in failed.error and "message was lost" in failed.error
    assert _statuses(failed) == ["pending", "processing", "failed"]
    assert [sent.message.kind for sent in queue.sends if sent.message.job_id == job.id][-1] == "callback"
    # And a copy of the message arriving late changes nothing
    assert _consumer(repo, queue, clock).handle(message_body(job), "arn", "r", REMAINING_MS) is Outcome.DROPPED
    assert _reload(repo, job).history == failed.history and behaviour.runs == 1


def test_an_in_flight_job_that_resends_cannot_move_is_failed_after_the_give_up_time(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a killed attempt whose every re-sent copy is lost too (deleted behind the job's back)
    job = _killed_mid_attempt(repo, queue, clock, _enqueue(repo, queue, clock))
    # When the sweeper runs every minute for a day and more
    resent = failed = 0
    for _ in range(GIVE_UP // 60 + 60):
        clock.advance(60)
        report = sweep(repo, queue, clock, SETTINGS)
        resent, failed = resent + report.orphans_resent, failed + report.orphans_failed
    # Then it re-sent the job ever less often, and then ended it as failed, once, naming the cause
    assert 3 <= resent <= 10 and failed == 1
    ended = _reload(repo, job)
    assert ended.status == JobStatus.FAILED and ended.error is not None and "no message left" in ended.error
    assert _statuses(ended) == ["pending", "processing", "failed"]


class RacingRepository(InMemoryJobsRepository):
    """Runs ``race`` after the sweeper read its due jobs and before it writes: a consumer moving the job meanwhile."""

    race: Callable[[], None] | None = None

    def due_for_sweep(self, shard: int, until: str, limit: int) -> list[Job]:
        due = super().due_for_sweep(shard, until, limit)
        if due and self.race is not None:
            race, self.race = self.race, None
            race()
        return due


def test_the_sweeper_and_a_late_consumer_never_both_end_a_job(
    queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a dead last attempt whose message was thought lost, and a late copy of it arriving just as the sweeper
    # has read the job (the consumer records the dead attempt as failed)
    repo = RacingRepository()
    job = _enqueue(repo, queue, clock, max_attempts=1)
    _killed_mid_attempt(repo, queue, clock, job)
    clock.advance(REMAINING_MS / 1000 + IN_FLIGHT_GRACE)
    repo.race = lambda: _consumer(repo, queue, clock).handle(message_body(job), "arn", "r", REMAINING_MS) and None
    # When the sweeper runs
    report = sweep(repo, queue, clock, SETTINGS)
    # Then its write loses to the consumer's, and the history holds a single final transition
    assert report.orphans_failed == 0 and report.skipped == 1
    ended = _reload(repo, job)
    assert ended.status == JobStatus.FAILED and _statuses(ended) == ["pending", "processing", "failed"]
    assert ended.error is not None and "message was lost" not in ended.error
    assert isinstance(ended.callback, Callback | None)


def test_the_sweeper_moves_a_running_attempts_mark_without_changing_its_version(
    repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock, behaviour: Behaviour
) -> None:
    # Given a processing job with a live lease that carries an earlier, already due mark (an older version's)
    job = _killed_mid_attempt(repo, queue, clock, _enqueue(repo, queue, clock))
    repo.save(job, job.model_copy(update={"sweep_at": clock.iso(-1)}))
    marked = _reload(repo, job)
    # When the sweeper runs during the attempt
    report = sweep(repo, queue, clock, SETTINGS)
    # Then only the mark moves (past the lease), not the version, so the attempt's outcome write still succeeds
    assert _reload(repo, job) == marked.model_copy(
        update={"sweep_at": clock.iso(REMAINING_MS / 1000 + IN_FLIGHT_GRACE)}
    )
    assert report.orphans_resent == 0 and queue.sent_job_ids() == [job.id]
