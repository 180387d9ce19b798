"""Fan-out batches (logic/batches.py) on the in-memory fakes: all-or-nothing validation, the order of the writes,
exactly-once settling, and the batch as GET /batches/{id} shows it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from functions.dal.batches import BatchRecord
from functions.logic.batches import (
    BATCH_ID_PLACEHOLDER,
    AcceptedBatch,
    BatchSettler,
    accepted_view,
    batch_view,
    create_batch,
    enqueue_settings,
)
from functions.logic.clock import iso
from functions.logic.enqueue import parse_job_spec, submit
from functions.models.errors import (
    ConcurrentUpdate,
    IdempotencyConflict,
    InvalidBody,
    InvalidOption,
    InvalidPayload,
    InvalidType,
    NotFound,
    StorageError,
)
from functions.models.job import HistoryEntry, Job, JobStatus
from functions.settings import Settings
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue

TENANT = "tenant-a"
SETTINGS = Settings(pending_grace_seconds=120, release_ahead_seconds=900)


class InMemoryBatchStore:
    """A ``BatchStore`` over the fake repository: the counters are the ones its ``save`` moves (``batch_counters``),
    as DynamoDB keeps them on the same item; ``settle`` is conditional like the real transaction."""

    def __init__(self, repo: InMemoryJobsRepository) -> None:
        self.repo = repo
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.conflicts = 0  # the next settles that fail with a transaction conflict
        self.settle_calls = 0
        self.before_open: Callable[[list[str]], None] | None = None
        self.before_settle: Callable[[], None] | None = None

    def open(
        self, tenant: str, batch_id: str, job_ids: list[str], created_at: str, on_complete: dict[str, Any] | None
    ) -> BatchRecord:
        if self.before_open is not None:
            self.before_open(job_ids)
        if (tenant, batch_id) in self.items:  # written by the request this one resumes: as DynamoBatchStore.open
            written = self.get(tenant, batch_id)
            assert written is not None
            return written
        self.items[(tenant, batch_id)] = {
            "total": len(job_ids),
            "job_ids": tuple(job_ids),
            "created_at": created_at,
            "status": "running",
            "on_complete": json.loads(json.dumps(on_complete)) if on_complete is not None else None,
        }
        record = self.get(tenant, batch_id)
        assert record is not None
        return record

    def get(self, tenant: str, batch_id: str) -> BatchRecord | None:
        item = self.items.get((tenant, batch_id))
        counters = self.repo.batch_counters.get((tenant, batch_id))
        if item is None and counters is None:
            return None
        item = item or {}
        counters = counters or Counter()
        return BatchRecord(
            tenant=tenant,
            id=batch_id,
            total=item.get("total"),
            job_ids=item.get("job_ids", ()),
            created_at=item.get("created_at"),
            status=item.get("status", "running"),
            finished=counters["finished"],
            unsuccessful=counters["unsuccessful"],
            completed_at=item.get("completed_at"),
            on_complete=item.get("on_complete"),
            on_complete_job_id=item.get("on_complete_job_id"),
        )

    def settle(self, batch: BatchRecord, status: str, completed_at: str, on_complete_job: Job | None) -> bool:
        self.settle_calls += 1
        hook, self.before_settle = self.before_settle, None
        if hook is not None:
            hook()
        if self.conflicts:
            self.conflicts -= 1
            raise ConcurrentUpdate("transaction conflict")
        current = self.get(batch.tenant, batch.id)
        if current is None or not current.is_due or current.unsuccessful != batch.unsuccessful:
            return False
        self.items[(batch.tenant, batch.id)].update(
            status=status,
            completed_at=completed_at,
            on_complete_job_id=on_complete_job.id if on_complete_job else None,
        )
        if on_complete_job is not None:
            self.repo.create(on_complete_job)
        return True

    def child_statuses(self, tenant: str, job_ids: list[str]) -> dict[str, JobStatus]:
        found = {job_id: self.repo.get(tenant, job_id) for job_id in job_ids}
        return {job_id: job.status for job_id, job in found.items() if job is not None}


@pytest.fixture
def store(repo: InMemoryJobsRepository) -> InMemoryBatchStore:
    return InMemoryBatchStore(repo)


@pytest.fixture
def settler(
    repo: InMemoryJobsRepository, queue: RecordingQueue, store: InMemoryBatchStore, clock: FakeClock
) -> BatchSettler:
    return BatchSettler(repo, queue, SETTINGS, store, clock, sleep=lambda seconds: None)


def ok_spec(target: str = "cat.png", **options: Any) -> dict[str, Any]:
    return {"type": "simulate", "payload": {"target": target, "durationMs": 0, "failureRate": 0}, **options}


def message_spec(message: str = "done", **options: Any) -> dict[str, Any]:
    return {"type": "message", "payload": {"message": message}, **options}


class Batches:
    """The test's view: create batches and end children as the consumer (or a cancel) would."""

    def __init__(
        self,
        repo: InMemoryJobsRepository,
        store: InMemoryBatchStore,
        queue: RecordingQueue,
        settler: BatchSettler,
        clock: FakeClock,
    ) -> None:
        self.repo, self.store, self.queue, self.settler, self.clock = repo, store, queue, settler, clock

    def create(self, body: Any, tenant: str = TENANT) -> BatchRecord:
        return self.create_keyed(body, None, tenant).batch

    def create_keyed(self, body: Any, key: str | None, tenant: str = TENANT) -> AcceptedBatch:
        settings = enqueue_settings(SETTINGS)
        return create_batch(
            body, tenant, self.repo, self.store, self.queue, self.settler, self.clock, settings, idempotency_header=key
        )

    def end(self, job_id: str, status: JobStatus = JobStatus.COMPLETED, *, settle: bool = True) -> Job:
        """Make a child final (one save, counters moved with it), then call the settler as the consumer does."""
        job = self.repo.get(TENANT, job_id)
        assert job is not None
        final = job.model_copy(
            update={
                "status": status,
                "completed_at": self.clock.iso(),
                "updated_at": self.clock.iso(),
                "sweep_at": None,
                "history": (*job.history, HistoryEntry(status=status, at=self.clock.iso())),
            }
        )
        self.repo.save(job, final)
        saved = final.model_copy(update={"version": job.version + 1})
        if settle:
            self.settler.job_final(saved)
        return saved

    def jobs_of_type(self, job_type: str) -> list[Job]:
        return [job for job in self.repo.all_jobs() if job.type == job_type]


@pytest.fixture
def batches(
    repo: InMemoryJobsRepository,
    store: InMemoryBatchStore,
    queue: RecordingQueue,
    settler: BatchSettler,
    clock: FakeClock,
) -> Batches:
    return Batches(repo, store, queue, settler, clock)


# --- validation: all or nothing ---


@pytest.mark.parametrize(
    ("bad", "error", "code_fragment"),
    [
        ({"type": "simulate", "payload": {"durationMs": 0}}, InvalidPayload, "payload"),
        ({"type": "no-such-type"}, InvalidType, "type"),
        (ok_spec(priority=11), InvalidOption, "priority"),
        (ok_spec(idempotencyKey="k-1"), InvalidOption, "idempotencyKey"),
        (ok_spec(colour="red"), InvalidOption, "unknown"),
        ("not a spec", InvalidBody, "object"),
    ],
)
def test_one_bad_spec_refuses_the_whole_batch_naming_its_index(
    batches: Batches, bad: Any, error: type[Exception], code_fragment: str
) -> None:
    # Given a batch whose third spec is bad
    body = {"jobs": [ok_spec("a.png"), ok_spec("b.png"), bad, ok_spec("d.png")], "onComplete": message_spec()}

    # When it is submitted
    with pytest.raises(error) as raised:
        batches.create(body)

    # Then the error names the spec by its index, with the code POST /jobs would answer for it
    assert str(raised.value).startswith("jobs[2]: ")
    assert code_fragment in str(raised.value)
    assert raised.value.details["index"] == 2  # type: ignore[attr-defined]
    assert raised.value.details["at"] == "jobs[2]"  # type: ignore[attr-defined]
    # And nothing was written or sent
    assert batches.repo.all_jobs() == []
    assert batches.store.items == {}
    assert batches.queue.sends == []


def test_a_bad_payload_keeps_the_field_errors_in_the_details(batches: Batches) -> None:
    with pytest.raises(InvalidPayload) as raised:
        batches.create({"jobs": [ok_spec(), {"type": "simulate", "payload": {"failureRate": 2}}]})
    details = raised.value.details
    assert details["index"] == 1
    assert {error["field"] for error in details["details"]} >= {"target", "failureRate"}


@pytest.mark.parametrize(
    ("on_complete", "error"),
    [
        ({"type": "nope"}, InvalidType),
        ({"type": "message", "payload": {}}, InvalidPayload),
        (message_spec(idempotencyKey="k"), InvalidOption),
        ({"type": "message", "payload": {"message": "x", "padding": "y" * 70_000}}, InvalidPayload),
        ([], InvalidBody),
    ],
)
def test_a_bad_on_complete_refuses_the_batch_naming_it(
    batches: Batches, on_complete: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        batches.create({"jobs": [ok_spec()], "onComplete": on_complete})
    assert str(raised.value).startswith("onComplete")
    assert raised.value.details["at"] == "onComplete"  # type: ignore[attr-defined]
    assert batches.repo.all_jobs() == []


def test_an_on_complete_payload_over_64_kib_is_refused(batches: Batches, register_job_type: Callable[..., str]) -> None:
    from pydantic import BaseModel

    class Blob(BaseModel):
        data: str

    name = register_job_type("blob", lambda payload, ctx: None, payload=Blob)
    with pytest.raises(InvalidOption) as raised:
        batches.create({"jobs": [ok_spec()], "onComplete": {"type": name, "payload": {"data": "x" * 70_000}}})
    assert "65536" in str(raised.value)
    assert raised.value.details == {"at": "onComplete"}


@pytest.mark.parametrize(
    "body",
    [
        {"jobs": []},
        {"jobs": [ok_spec()] * 101},
        {"jobs": ok_spec()},
        {},
        [ok_spec()],
    ],
)
def test_the_batch_must_have_1_to_100_jobs(batches: Batches, body: Any) -> None:
    with pytest.raises(InvalidBody):
        batches.create(body)
    assert batches.repo.all_jobs() == []


def test_unknown_batch_fields_are_refused(batches: Batches) -> None:
    with pytest.raises(InvalidOption) as raised:
        batches.create({"jobs": [ok_spec()], "then": message_spec()})
    assert raised.value.details == {"allowed": ["idempotencyKey", "jobs", "onComplete"]}


# --- idempotency keys ---


def test_the_same_keyed_batch_again_is_the_first_one_and_creates_nothing(
    batches: Batches, repo: InMemoryJobsRepository, queue: RecordingQueue
) -> None:
    # Given a batch accepted with a key
    body = {"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec(BATCH_ID_PLACEHOLDER)}
    first = batches.create_keyed(body, "order-7")
    sent = len(queue.sends)

    # When the same request comes again, with its fields in another order and the key in the body
    again = batches.create_keyed(
        {"onComplete": body["onComplete"], "jobs": body["jobs"], "idempotencyKey": "order-7"}, None
    )

    # Then it is the first batch, replayed: no job, message or batch more
    assert again.replayed and not first.replayed
    assert (first.created, again.created) == (2, 0)
    assert again.batch.id == first.batch.id and again.batch.job_ids == first.batch.job_ids
    assert len(repo.all_jobs()) == 2 and len(queue.sends) == sent
    assert len(batches.store.items) == 1


def test_a_keyed_batch_with_another_body_is_a_conflict_naming_the_first(batches: Batches) -> None:
    first = batches.create_keyed({"jobs": [ok_spec("a")]}, "order-7")
    with pytest.raises(IdempotencyConflict) as raised:
        batches.create_keyed({"jobs": [ok_spec("b")]}, "order-7")
    assert raised.value.details == {"batchId": first.batch.id}


def test_a_keyed_batch_whose_first_request_stopped_part_way_is_finished_by_the_retry(
    batches: Batches, repo: InMemoryJobsRepository, store: InMemoryBatchStore, queue: RecordingQueue
) -> None:
    # Given a keyed request that stored its children, then died before writing the batch item
    body = {"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec(BATCH_ID_PLACEHOLDER)}

    def die(job_ids: list[str]) -> None:
        raise RuntimeError("the Lambda was killed")

    store.before_open = die
    with pytest.raises(RuntimeError):
        batches.create_keyed(body, "order-7")
    stored = sorted(job.id for job in repo.all_jobs())
    assert len(stored) == 2 and not store.items
    store.before_open = None

    # When the client sends it again
    retried = batches.create_keyed(body, "order-7")

    # Then the batch is written over the children that exist, none created twice, each child's message sent
    assert retried.replayed and retried.created == 0
    assert sorted(retried.batch.job_ids) == stored
    assert sorted(job.id for job in repo.all_jobs()) == stored
    assert {sent.message.job_id for sent in queue.sends} >= set(stored)
    on_complete = store.get(TENANT, retried.batch.id)
    assert on_complete is not None and on_complete.on_complete is not None
    assert on_complete.on_complete["payload"] == {"message": retried.batch.id}
    # And a third request is a plain replay
    assert batches.create_keyed(body, "order-7").batch.id == retried.batch.id


def test_a_retry_arriving_while_the_first_keyed_request_writes_makes_the_same_one_batch(
    batches: Batches, repo: InMemoryJobsRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a keyed request that has claimed its key, and its retry arriving before it stores the children
    body = {"jobs": [ok_spec("a"), ok_spec("b")]}
    create_many = repo.create_many
    started: list[bool] = []
    retries: list[AcceptedBatch] = []

    def retry_arrives_first(jobs: Sequence[Job], *, resume: bool = False) -> int:
        if not started:  # the first request's write: the retry runs whole before it
            started.append(True)
            retries.append(batches.create_keyed(body, "order-7"))
        return create_many(jobs, resume=resume)

    monkeypatch.setattr(repo, "create_many", retry_arrives_first)

    # When the first request goes on writing
    first = batches.create_keyed(body, "order-7")

    # Then both answer the one batch, its jobs stored once and counted once, and the first is not a conflict
    assert retries[0].batch.id == first.batch.id and retries[0].replayed and not first.replayed
    assert len(repo.all_jobs()) == 2
    assert retries[0].created + first.created == 2


def test_a_batch_key_and_a_job_key_of_the_same_text_are_apart(
    batches: Batches, repo: InMemoryJobsRepository, queue: RecordingQueue, clock: FakeClock
) -> None:
    # Given a job accepted with the key "k"
    spec = parse_job_spec(ok_spec("job"), clock(), "k")
    job = submit(spec, TENANT, repo, queue, clock, enqueue_settings(SETTINGS)).job
    # When a batch is posted with the same key, Then it is a batch of its own, not a conflict with the job
    accepted = batches.create_keyed({"jobs": [ok_spec("a")]}, "k")
    assert not accepted.replayed and job.id not in accepted.batch.job_ids


def test_unkeyed_batches_are_never_the_same_batch(batches: Batches) -> None:
    body = {"jobs": [ok_spec("a")]}
    assert batches.create(body).id != batches.create(body).id


# --- creating ---


def test_a_batch_writes_its_children_then_itself_then_sends_their_messages(batches: Batches, clock: FakeClock) -> None:
    # Given 100 specs (the most), one of them scheduled
    specs = [ok_spec(f"{i}.png") for i in range(99)] + [ok_spec("later.png", delaySeconds=60)]

    # When the batch is created
    batch = batches.create({"jobs": specs, "onComplete": message_spec()})

    # Then every child is stored, in the request's order, carrying the batch id and its sweep mark
    assert batch.total == 100 and len(batch.job_ids) == 100
    children = [batches.repo.get(TENANT, job_id) for job_id in batch.job_ids]
    assert [child.payload["target"] for child in children if child] == [f"{i}.png" for i in range(99)] + ["later.png"]
    for child in children:
        assert child is not None and child.batch_id == batch.id and child.sweep_at is not None
    assert children[-1] is not None and children[-1].status == JobStatus.SCHEDULED
    # And the tenant's counters count them exactly
    counters = batches.repo.counters(TENANT)
    assert (counters["enqueued"], counters["pending"], counters["scheduled"]) == (100, 99, 1)
    # And the batch is running, created now, with nothing finished
    assert (batch.status, batch.created_at, batch.finished, batch.completed_at) == ("running", clock.iso(), 0, None)
    # And each child's message went out (the scheduled one with its delay); no onComplete job exists yet
    assert [sent.message.job_id for sent in batches.queue.sends] == list(batch.job_ids)
    assert batches.queue.sends[-1].delay_seconds == 60
    assert batches.jobs_of_type("message") == []
    assert accepted_view(batch) == {
        "id": batch.id,
        "status": "running",
        "total": 100,
        "jobIds": list(batch.job_ids),
        "createdAt": clock.iso(),
        "onComplete": {"type": "message"},
    }


def test_a_message_that_cannot_be_sent_is_left_to_the_sweeper(batches: Batches) -> None:
    batches.queue.fail_sends = True
    batch = batches.create({"jobs": [ok_spec(), ok_spec()]})
    assert batches.queue.failed_sends == 2
    for job_id in batch.job_ids:
        child = batches.repo.get(TENANT, job_id)
        assert child is not None and child.status == JobStatus.PENDING and child.sweep_at is not None


# --- settling ---


def test_the_last_child_completes_the_batch_and_enqueues_on_complete_once(batches: Batches, clock: FakeClock) -> None:
    # Given a batch of three with an onComplete job
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b"), ok_spec("c")], "onComplete": message_spec("all done")})
    first, second, third = batch.job_ids

    # When the first two finish
    batches.end(first)
    clock.advance(1)
    batches.end(second)
    # Then the batch is still running and no onComplete job exists
    assert batches.store.get(TENANT, batch.id).status == "running"  # type: ignore[union-attr]
    assert batches.jobs_of_type("message") == []

    # When the last one finishes
    clock.advance(1)
    batches.end(third)

    # Then the batch is completed, now
    settled = batches.store.get(TENANT, batch.id)
    assert settled is not None
    assert (settled.status, settled.completed_at) == ("completed", clock.iso())
    # And exactly one onComplete job was created, pending with its sweep mark, and its message sent
    [follow_up] = batches.jobs_of_type("message")
    assert follow_up.payload == {"message": "all done"}
    assert follow_up.status == JobStatus.PENDING and follow_up.sweep_at is not None
    assert follow_up.batch_id is None  # it follows the batch; it is not one of its children
    assert settled.on_complete_job_id == follow_up.id
    assert batches.queue.sent_job_ids().count(follow_up.id) == 1
    assert batches.repo.counters(TENANT)["enqueued"] == 4

    # When a child's message is redelivered and finds it final (the consumer calls job_final again), many times
    for job_id in batch.job_ids:
        batches.settler.job_final(batches.repo.get(TENANT, job_id))  # type: ignore[arg-type]
    # Then nothing more happens
    assert len(batches.jobs_of_type("message")) == 1
    assert batches.queue.sent_job_ids().count(follow_up.id) == 1


@pytest.mark.parametrize("unsuccessful", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_failed_or_cancelled_child_makes_it_completed_with_failures(
    batches: Batches, unsuccessful: JobStatus
) -> None:
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec()})
    batches.end(batch.job_ids[0], unsuccessful)
    batches.end(batch.job_ids[1])
    settled = batches.store.get(TENANT, batch.id)
    assert settled is not None and settled.status == "completed_with_failures"
    # The onComplete job runs either way
    assert len(batches.jobs_of_type("message")) == 1


def test_a_batch_without_on_complete_just_completes(batches: Batches) -> None:
    batch = batches.create({"jobs": [ok_spec()]})
    batches.end(batch.job_ids[0])
    settled = batches.store.get(TENANT, batch.id)
    assert settled is not None and settled.status == "completed" and settled.on_complete_job_id is None
    assert batches.repo.counters(TENANT)["enqueued"] == 1


def test_a_job_without_a_batch_or_before_its_batch_exists_is_ignored(batches: Batches, clock: FakeClock) -> None:
    from tests.unit.fakes import make_job

    # A job of no batch
    batches.settler.job_final(make_job(clock, status=JobStatus.COMPLETED))
    # A job whose batch item holds only counters (the producer has not written it yet)
    orphan = make_job(clock, job_id="00000000-0000-4000-8000-0000000000aa", batch_id="b-1")
    batches.repo.create(orphan)
    batches.end(orphan.id)
    assert batches.store.settle_calls == 0
    assert batches.store.get(TENANT, "b-1") == BatchRecord(tenant=TENANT, id="b-1", total=None, finished=1)


def test_children_that_end_before_the_batch_is_written_are_settled_by_the_producer(
    batches: Batches, clock: FakeClock
) -> None:
    # Given every child is cancelled between the children's write and the batch's (their settlers find no total)
    def cancel_all(job_ids: list[str]) -> None:
        for job_id in job_ids:
            batches.end(job_id, JobStatus.CANCELLED)

    batches.store.before_open = cancel_all

    # When the batch is created
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec()})

    # Then the producer saw finished == total in the batch's write and settled it
    assert (batch.status, batch.completed_at) == ("completed_with_failures", clock.iso())
    [follow_up] = batches.jobs_of_type("message")
    assert batch.on_complete_job_id == follow_up.id
    assert accepted_view(batch)["onComplete"] == {"type": "message", "jobId": follow_up.id}


def test_a_settler_that_loses_the_race_does_nothing(batches: Batches) -> None:
    # Given a batch whose last child is final, and another settler that gets there first
    batch = batches.create({"jobs": [ok_spec()], "onComplete": message_spec()})
    [job_id] = batch.job_ids
    final = batches.end(job_id, settle=False)
    other = BatchSettler(batches.repo, batches.queue, SETTINGS, batches.store, batches.clock)
    batches.store.before_settle = lambda: other.job_final(final)

    # When this settler tries too
    batches.settler.job_final(final)

    # Then one onComplete job exists, sent once
    [follow_up] = batches.jobs_of_type("message")
    assert batches.queue.sent_job_ids().count(follow_up.id) == 1
    assert batches.store.settle_calls == 2


def test_a_transaction_conflict_is_retried(batches: Batches) -> None:
    batch = batches.create({"jobs": [ok_spec()], "onComplete": message_spec()})
    batches.store.conflicts = 2
    batches.end(batch.job_ids[0])
    assert len(batches.jobs_of_type("message")) == 1
    assert batches.store.settle_calls == 3


def test_a_batch_that_cannot_be_settled_raises_so_the_message_comes_back(batches: Batches) -> None:
    # Given the batch item keeps conflicting
    batch = batches.create({"jobs": [ok_spec()], "onComplete": message_spec()})
    batches.store.conflicts = 100
    # When the last child's settler runs, it gives up with a StorageError (the consumer leaves the message)
    final = batches.end(batch.job_ids[0], settle=False)
    with pytest.raises(StorageError):
        batches.settler.job_final(final)
    # And when the message comes back (the conflicts are over), the batch completes
    batches.store.conflicts = 0
    batches.settler.job_final(final)
    assert len(batches.jobs_of_type("message")) == 1


def test_the_counts_moving_under_a_settler_are_read_again(batches: Batches) -> None:
    # Given the last child is final, but before the settle is written it is retried and fails (counts move)
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec()})
    batches.end(batch.job_ids[0])
    last = batches.end(batch.job_ids[1], settle=False)

    def retried_then_failed() -> None:
        pending = last.model_copy(update={"status": JobStatus.PENDING})
        batches.repo.save(last, pending)
        batches.end(last.id, JobStatus.FAILED, settle=False)

    batches.store.before_settle = retried_then_failed
    batches.settler.job_final(last)

    # Then the status written is the one the counts say when it is written
    settled = batches.store.get(TENANT, batch.id)
    assert settled is not None and settled.status == "completed_with_failures"
    assert len(batches.jobs_of_type("message")) == 1


def test_a_child_retried_after_completion_does_not_reopen_the_batch(batches: Batches) -> None:
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b")], "onComplete": message_spec()})
    batches.end(batch.job_ids[0], JobStatus.FAILED)
    batches.end(batch.job_ids[1])
    # When the failed child is retried, and completes this time
    failed = batches.repo.get(TENANT, batch.job_ids[0])
    assert failed is not None
    batches.repo.save(failed, failed.model_copy(update={"status": JobStatus.PENDING}))
    batches.end(batch.job_ids[0])
    # Then the batch stays as it completed, and its onComplete job is not enqueued again
    settled = batches.store.get(TENANT, batch.id)
    assert settled is not None and settled.status == "completed_with_failures"
    assert len(batches.jobs_of_type("message")) == 1


def test_the_on_complete_send_failing_leaves_it_to_the_sweeper(batches: Batches) -> None:
    batch = batches.create({"jobs": [ok_spec()], "onComplete": message_spec()})
    batches.queue.fail_sends = True
    batches.end(batch.job_ids[0])
    [follow_up] = batches.jobs_of_type("message")
    assert follow_up.status == JobStatus.PENDING and follow_up.sweep_at is not None


def test_on_complete_delay_counts_from_completion_and_names_the_batch(batches: Batches, clock: FakeClock) -> None:
    # Given an onComplete job delayed 30 s, whose payload asks for the batch's id
    on_complete = message_spec(BATCH_ID_PLACEHOLDER, delaySeconds=30, priority=9, maxAttempts=2)
    batch = batches.create({"jobs": [ok_spec()], "onComplete": on_complete})

    # When the batch completes an hour later
    clock.advance(3600)
    batches.end(batch.job_ids[0])

    # Then the onComplete job runs 30 s after completion, with the batch's id in its payload and its options
    [follow_up] = batches.jobs_of_type("message")
    assert follow_up.payload == {"message": batch.id}
    assert follow_up.status == JobStatus.SCHEDULED and follow_up.run_at == clock.iso(30)
    assert (follow_up.priority, follow_up.max_attempts) == (9, 2)
    assert [sent.delay_seconds for sent in batches.queue.sends if sent.message.job_id == follow_up.id] == [30]


def test_children_and_the_on_complete_job_keep_their_timeouts(batches: Batches) -> None:
    # Given a batch whose child and onComplete job each have timeoutSeconds
    on_complete = message_spec("done", timeoutSeconds=7)
    batch = batches.create({"jobs": [ok_spec(timeoutSeconds=5), ok_spec()], "onComplete": on_complete})
    # Then each child's record has its own (or none)
    children = [batches.repo.get(TENANT, job_id) for job_id in batch.job_ids]
    assert [child.timeout_seconds for child in children if child is not None] == [5, None]
    # When the batch completes, then the onComplete job has its timeout
    for job_id in batch.job_ids:
        batches.end(job_id)
    [follow_up] = batches.jobs_of_type("message")
    assert follow_up.timeout_seconds == 7


def test_on_complete_run_at_past_at_completion_means_now(batches: Batches, clock: FakeClock) -> None:
    batch = batches.create({"jobs": [ok_spec()], "onComplete": message_spec(runAt=clock.iso(60))})
    clock.advance(120)
    batches.end(batch.job_ids[0])
    [follow_up] = batches.jobs_of_type("message")
    assert follow_up.status == JobStatus.PENDING and follow_up.run_at is None


# --- reading ---


def test_the_view_counts_children_by_status(batches: Batches, clock: FakeClock) -> None:
    batch = batches.create({"jobs": [ok_spec("a"), ok_spec("b"), ok_spec("c")], "onComplete": message_spec()})
    batches.end(batch.job_ids[0])
    batches.end(batch.job_ids[1], JobStatus.FAILED)

    view = batch_view(batches.store, TENANT, batch.id)

    assert view == {
        "id": batch.id,
        "status": "running",
        "total": 3,
        "counts": {
            "scheduled": 0,
            "pending": 1,
            "processing": 0,
            "retrying": 0,
            "completed": 1,
            "failed": 1,
            "cancelled": 0,
            "waiting": 0,
        },
        "jobIds": list(batch.job_ids),
        "createdAt": clock.iso(),
        "completedAt": None,
        "onComplete": {"type": "message"},
    }
    batches.end(batch.job_ids[2])
    view = batch_view(batches.store, TENANT, batch.id)
    assert view["status"] == "completed_with_failures" and view["completedAt"] == iso(clock())
    assert view["onComplete"]["jobId"] == batches.jobs_of_type("message")[0].id


def test_unknown_other_tenants_and_unwritten_batches_are_not_found(batches: Batches, clock: FakeClock) -> None:
    batch = batches.create({"jobs": [ok_spec()]})
    batches.repo.batch_counters[(TENANT, "counters-only")] = Counter(finished=1)
    for tenant, batch_id in [
        (TENANT, "00000000-0000-4000-8000-00000000ffff"),
        ("tenant-b", batch.id),
        (TENANT, "counters-only"),
        (TENANT, "x" * 2000),
        (TENANT, "a#b"),
    ]:
        with pytest.raises(NotFound):
            batch_view(batches.store, tenant, batch_id)
