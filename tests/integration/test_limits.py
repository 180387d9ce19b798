"""Per-type limits on moto: the DynamoDB conditions themselves, and several consumers (each with its own limiter,
as separate Lambda environments would have) racing on one queue without exceeding a concurrency or a rate limit."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import boto3
import pytest
from pydantic import BaseModel

from functions.dal.limits import DynamoLimitsStore
from functions.handlers import runtime as runtime_module
from functions.handlers.runtime import runtime
from functions.logic.clock import parse_iso_ms, system_clock
from functions.logic.consume import ConsumerSettings, MessageConsumer, Outcome
from functions.logic.job_types import JobContext, JobType, registry
from functions.logic.limits import DynamoLimiter, limiter_from_settings
from functions.models.errors import JobDeferred
from functions.settings import Settings
from tests.integration.harness import TENANT_A, Service, statuses

PROBE = "limits-probe"
CONSUMER_REMAINING_MS = 30_000


class ProbePayload(BaseModel):
    sleepMs: int = 0


class Probe:
    """A job type that records how many of its attempts run at once, and when each started."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, payload: ProbePayload, ctx: JobContext) -> str:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(time.time())
        try:
            time.sleep(payload.sleepMs / 1000)
        finally:
            with self._lock:
                self.running -= 1
        return "ok"


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    handler = Probe()
    monkeypatch.setitem(registry._REGISTRY, PROBE, JobType(name=PROBE, payload_model=ProbePayload, handler=handler))
    return handler


@pytest.fixture
def limits_table(service: Service) -> str:
    """The limits table, as the local resources create it (pk string, TTL expiresAt)."""
    return service.settings.limits_table


def with_limits(monkeypatch: pytest.MonkeyPatch, limits: dict[str, Any]) -> Settings:
    monkeypatch.setenv("JOBS_TYPE_LIMITS", json.dumps(limits))
    runtime_module.reset()
    return runtime().settings


class Consumers:
    """N consumers polling the moto queue in threads, each with its own MessageConsumer and limiter (no memory is
    shared between them but DynamoDB), deleting what returns and leaving what raises, as the event source does."""

    def __init__(self, service: Service, settings: Settings, count: int) -> None:
        self.service = service
        self.outcomes: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        rt = runtime()
        # Clients are made here: creating boto3 clients from several threads at once is not safe.
        self._workers = [
            (
                MessageConsumer(
                    repo=rt.repo,
                    queue=rt.queue,
                    clock=system_clock,
                    settings=ConsumerSettings(settings.backoff_base_seconds, settings.backoff_cap_seconds),
                    job_settings=settings,
                    limiter=limiter_from_settings(settings, boto3.client("dynamodb")),
                ),
                boto3.client("sqs"),
            )
            for _ in range(count)
        ]
        self._threads = [threading.Thread(target=self._poll, args=worker, daemon=True) for worker in self._workers]

    def __enter__(self) -> Consumers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _poll(self, consumer: MessageConsumer, sqs: Any) -> None:
        url, arn = self.service.queue_url, self.service.queue_arn
        while not self._stop.is_set():
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                time.sleep(0.05)
                continue
            for message in messages:
                try:
                    outcome = consumer.handle(message["Body"], arn, message["ReceiptHandle"], CONSUMER_REMAINING_MS)
                except JobDeferred:
                    continue
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    with self._lock:
                        self.errors.append(exc)
                    continue
                with self._lock:
                    self.outcomes[outcome.value] += 1
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def wait_final(self, job_ids: list[str], timeout: float = 40.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = [self.service.job(job_id) for job_id in job_ids]
            if all(job["status"] in ("completed", "failed", "cancelled") for job in jobs):
                return jobs
            assert not self.errors, self.errors
            if time.monotonic() > deadline:
                raise AssertionError(f"not all final after {timeout}s: {Counter(job['status'] for job in jobs)}")
            time.sleep(0.2)


def enqueue(service: Service, count: int, sleep_ms: int = 0) -> list[str]:
    return [service.create_job({"type": PROBE, "payload": {"sleepMs": sleep_ms}})["id"] for _ in range(count)]


def assert_completed_first_time(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        assert (job["status"], job["attempts"]) == ("completed", 1), job
        assert statuses(job) == [("pending", None), ("processing", 1), ("completed", 1)]


# --- the DynamoDB store on moto ---


def test_rate_window_counts_up_to_its_limit(service: Service, limits_table: str) -> None:
    # Given the store on the limits table
    store = DynamoLimitsStore(service.dynamodb, limits_table)

    # When four starts ask a window that allows two
    taken = [store.take_token("t#x#rate#100", 2, 160) for _ in range(4)]

    # Then two were counted, and the item expires after the window
    assert taken == [True, True, False, False]
    item = service.dynamodb.get_item(TableName=limits_table, Key={"pk": {"S": "t#x#rate#100"}})["Item"]
    assert (item["n"]["N"], item["expiresAt"]["N"]) == ("2", "160")


def test_waiting_schedule_hands_out_places_never_below_its_floor(service: Service, limits_table: str) -> None:
    # Given the store on the limits table
    store = DynamoLimitsStore(service.dynamodb, limits_table)

    # When places are taken with a floor of 10, then the floor moves past them to 20, then back to 15 (a slow clock)
    places = [store.reserve("t#x#rate#next", 10, 999) for _ in range(2)]
    places += [store.reserve("t#x#rate#next", 20, 999), store.reserve("t#x#rate#next", 15, 999)]

    # Then places are consecutive, restart at a floor the schedule lags behind, and never go back
    assert places == [10, 11, 20, 21]


def test_slot_conditions_on_dynamodb(service: Service, limits_table: str) -> None:
    # Given a slot held by "a" until t=1000
    store = DynamoLimitsStore(service.dynamodb, limits_table)
    assert store.claim_slot("t#x#slot#0", "a", 0, 1000, 99)

    # Then "b" cannot take it during the lease, "a" can again, "b" cannot release it, and it is read back
    assert not store.claim_slot("t#x#slot#0", "b", 500, 1500, 99)
    assert store.claim_slot("t#x#slot#0", "a", 500, 1000, 99)
    assert not store.release_slot("t#x#slot#0", "b")
    held = store.read_slots(["t#x#slot#0", "t#x#slot#1"])
    assert list(held) == ["t#x#slot#0"] and held["t#x#slot#0"].holder == "a"

    # When the lease has passed, "b" takes it over; then "a" (late) cannot release it, "b" can
    assert store.claim_slot("t#x#slot#0", "b", 1001, 2000, 99)
    assert not store.release_slot("t#x#slot#0", "a")
    assert store.release_slot("t#x#slot#0", "b")
    assert store.read_slots(["t#x#slot#0"]) == {}


# --- consumers racing ---


def test_consumers_racing_never_exceed_the_concurrency_limit(
    service: Service, limits_table: str, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a concurrency of 2 for the probe type, and 8 jobs of 150 ms
    settings = with_limits(monkeypatch, {PROBE: {"concurrency": 2}})
    job_ids = enqueue(service, 8, sleep_ms=150)

    # When three consumers work the queue at once
    with Consumers(service, settings, 3) as consumers:
        jobs = consumers.wait_final(job_ids)

    # Then never more than two ran at once, the third consumer was made to wait, and no attempt was burned by it
    assert probe.peak <= 2
    assert consumers.outcomes[Outcome.THROTTLED] >= 1
    assert consumers.outcomes[Outcome.COMPLETED] == 8
    assert_completed_first_time(jobs)
    # Every slot was given back
    assert (
        DynamoLimitsStore(service.dynamodb, limits_table).read_slots([f"{TENANT_A}#{PROBE}#slot#{i}" for i in range(2)])
        == {}
    )


def test_a_rate_limit_holds_across_two_consumers(
    service: Service, limits_table: str, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 2 starts per second for the probe type, and 7 jobs
    settings = with_limits(monkeypatch, {PROBE: {"ratePerSecond": 2}})
    job_ids = enqueue(service, 7)

    # When two consumers work the queue at once
    with Consumers(service, settings, 2) as consumers:
        jobs = consumers.wait_final(job_ids)

    # Then no one-second window (the limiter's window: the second of startedAt) saw more than 2 starts
    per_second = Counter(parse_iso_ms(job["startedAt"]) // 1000 for job in jobs)
    assert max(per_second.values()) <= 2, per_second
    assert len(per_second) >= 4
    # And the jobs over the limit waited without burning an attempt
    assert consumers.outcomes[Outcome.THROTTLED] >= 1
    assert_completed_first_time(jobs)


def test_a_crashed_holders_slot_is_reclaimed_after_its_lease(
    service: Service, limits_table: str, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a concurrency of 1, whose slot a consumer took for 2 s and then died (never released it)
    settings = with_limits(monkeypatch, {PROBE: {"concurrency": 1}})
    crashed = limiter_from_settings(settings, service.dynamodb)
    assert isinstance(crashed, DynamoLimiter)
    now = system_clock()
    assert crashed.admit(TENANT_A, PROBE, "crashed-job", now, now + 2000).admitted
    job_ids = enqueue(service, 1)

    # When a consumer works the queue
    with Consumers(service, settings, 1) as consumers:
        jobs = consumers.wait_final(job_ids)

    # Then the job waited for the dead holder's lease, then ran on its first attempt
    assert consumers.outcomes[Outcome.THROTTLED] >= 1
    assert parse_iso_ms(jobs[0]["startedAt"]) > now + 2000
    assert_completed_first_time(jobs)
