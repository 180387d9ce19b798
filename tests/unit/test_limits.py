"""Per-type limits: configuration checks, and the limiter's admission against an in-memory store with DynamoDB's
semantics (one atomic conditional write per call)."""

from __future__ import annotations

import random
import threading
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.dal.limits import DynamoLimitsStore, SlotState
from functions.logic.limits import (
    DynamoLimiter,
    InvalidTypeLimits,
    NoLimits,
    TypeLimit,
    limiter_from_settings,
    parse_type_limits,
    rate_window,
)
from functions.models.errors import StorageError
from functions.settings import Settings

T0_MS = 1_700_000_000_000  # a whole second
LEASE_MS = 30_000


class InMemoryLimitsStore:
    """LimitsStore with the table's semantics: every call atomic, conditions checked as DynamoDB would."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_release = False
        self._lock = threading.Lock()

    def take_token(self, key: str, limit: int, expires_at_s: int) -> bool:
        with self._lock:
            self.calls.append("take_token")
            item = self.items.setdefault(key, {})
            if item.get("n", 0) >= limit:
                return False
            item["n"] = item.get("n", 0) + 1
            item["expiresAt"] = expires_at_s
            return True

    def reserve(self, key: str, floor: int, expires_at_s: int) -> int:
        with self._lock:
            self.calls.append("reserve")
            item = self.items.setdefault(key, {})
            place = max(item.get("v", floor), floor)
            item["v"] = place + 1
            item["expiresAt"] = expires_at_s
            return int(place)

    def read_slots(self, keys: list[str]) -> dict[str, SlotState]:
        with self._lock:
            self.calls.append("read_slots")
            return {
                key: SlotState(self.items[key]["holder"], self.items[key]["leaseUntil"])
                for key in keys
                if key in self.items
            }

    def claim_slot(self, key: str, holder: str, now_ms: int, lease_until_ms: int, expires_at_s: int) -> bool:
        with self._lock:
            self.calls.append("claim_slot")
            item = self.items.get(key)
            if item is not None and item["leaseUntil"] >= now_ms and item["holder"] != holder:
                return False
            self.items[key] = {"holder": holder, "leaseUntil": lease_until_ms, "expiresAt": expires_at_s}
            return True

    def release_slot(self, key: str, holder: str) -> bool:
        with self._lock:
            self.calls.append("release_slot")
            if self.fail_release:
                raise StorageError("DynamoDB DeleteItem (slot) failed: throttled")
            item = self.items.get(key)
            if item is None or item["holder"] != holder:
                return False
            del self.items[key]
            return True

    def held_slots(self, now_ms: int) -> int:
        return sum(1 for key, item in self.items.items() if "#slot#" in key and item["leaseUntil"] >= now_ms)


@pytest.fixture
def store() -> InMemoryLimitsStore:
    return InMemoryLimitsStore()


def limiter(store: InMemoryLimitsStore, **limits: TypeLimit) -> DynamoLimiter:
    return DynamoLimiter(store, {name.replace("_", "-"): limit for name, limit in limits.items()}, random.Random(7))


def admit(lim: DynamoLimiter, job_id: str, now_ms: int = T0_MS, tenant: str = "t1", job_type: str = "hook") -> Any:
    return lim.admit(tenant, job_type, job_id, now_ms, now_ms + LEASE_MS)


# --- configuration ---


def test_parse_accepts_the_documented_format() -> None:
    # Given the README's example
    raw = '{"webhook-delivery": {"ratePerSecond": 5, "concurrency": 2}, "fetch": {"concurrency": 4, "scope": "global"}}'

    # When it is parsed
    limits = parse_type_limits(raw, ["webhook-delivery", "fetch", "simulate"])

    # Then each type has its limits, tenant scope by default
    assert limits == {
        "webhook-delivery": TypeLimit(rate_per_second=5.0, concurrency=2, scope="tenant"),
        "fetch": TypeLimit(concurrency=4, scope="global"),
    }


@pytest.mark.parametrize("raw", ["", "  ", "{}"])
def test_empty_configuration_means_no_limits(raw: str) -> None:
    assert parse_type_limits(raw) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"hook": 5}', "type_limits['hook'] must be an object"),
        ('{"hook": {}}', "type_limits['hook'] needs ratePerSecond and/or concurrency"),
        ('{"hook": {"rate": 5}}', "type_limits['hook']: unknown key(s) rate"),
        ('{"hook": {"ratePerSecond": 0}}', "type_limits['hook'].ratePerSecond must be > 0"),
        ('{"hook": {"ratePerSecond": -1}}', "type_limits['hook'].ratePerSecond must be > 0"),
        ('{"hook": {"ratePerSecond": 5000}}', "must be > 0 and <= 1000"),
        ('{"hook": {"ratePerSecond": "5"}}', "type_limits['hook'].ratePerSecond must be a number"),
        ('{"hook": {"ratePerSecond": true}}', "must be a number"),
        ('{"hook": {"ratePerSecond": 0.37}}', "has no window of at most 60 whole seconds"),
        ('{"hook": {"concurrency": 0}}', "type_limits['hook'].concurrency must be from 1 to 100"),
        ('{"hook": {"concurrency": 101}}', "must be from 1 to 100"),
        ('{"hook": {"concurrency": 1.5}}', "type_limits['hook'].concurrency must be a whole number"),
        ('{"hook": {"concurrency": 2, "scope": "account"}}', "type_limits['hook'].scope must be"),
        ('{"hoook": {"concurrency": 2}}', "type_limits['hoook']: 'hoook' is not a job type"),
    ],
)
def test_bad_configuration_is_refused_naming_the_entry(raw: str, message: str) -> None:
    # Given a configuration with one mistake, When it is parsed, Then the error names the entry and the problem
    with pytest.raises(InvalidTypeLimits) as raised:
        parse_type_limits(raw, ["hook"])
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("rate", "window"),
    [(5, (1, 5)), (1, (1, 1)), (0.5, (2, 1)), (2.5, (2, 5)), (0.2, (5, 1)), (0.3, (10, 3)), (1 / 60, (60, 1))],
)
def test_fractional_rates_use_the_smallest_whole_window(rate: float, window: tuple[int, int]) -> None:
    assert rate_window(rate) == window


def test_limiter_from_settings_without_limits_is_no_limits() -> None:
    # Given no type limits, When the limiter is built, Then it is NoLimits and never touches DynamoDB
    assert isinstance(limiter_from_settings(Settings(type_limits=""), ddb=None), NoLimits)


def test_limiter_from_settings_refuses_an_unknown_type() -> None:
    with pytest.raises(InvalidTypeLimits, match="'nope' is not a job type"):
        limiter_from_settings(Settings(type_limits='{"nope": {"concurrency": 1}}'), ddb=None)


def test_limiter_from_settings_with_limits_is_the_dynamo_limiter() -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    built = limiter_from_settings(Settings(type_limits='{"simulate": {"concurrency": 1}}'), ddb)
    assert isinstance(built, DynamoLimiter)


# --- admission ---


def test_a_type_without_limits_is_admitted_without_touching_the_store(store: InMemoryLimitsStore) -> None:
    # Given limits on another type
    lim = limiter(store, other=TypeLimit(concurrency=1))

    # When a job of an unlimited type asks
    admission = admit(lim, "job-1")

    # Then it is admitted and the store was never called
    assert admission.admitted
    assert store.calls == []


def test_concurrency_admits_up_to_the_limit_then_waits_1_to_2_seconds(store: InMemoryLimitsStore) -> None:
    # Given a concurrency of 2
    lim = limiter(store, hook=TypeLimit(concurrency=2))

    # When three jobs ask at once
    first, second, third = (admit(lim, f"job-{i}") for i in range(3))

    # Then two run and the third waits a short while
    assert first.admitted and second.admitted
    assert not third.admitted
    assert third.retry_after_seconds in (1, 2)
    assert store.held_slots(T0_MS) == 2


def test_a_released_slot_admits_the_next_job(store: InMemoryLimitsStore) -> None:
    # Given a concurrency of 1 held by a job
    lim = limiter(store, hook=TypeLimit(concurrency=1))
    first = admit(lim, "job-1")
    assert not admit(lim, "job-2").admitted

    # When the first job's attempt ends (release twice: it is idempotent)
    first.release()
    first.release()

    # Then the next job is admitted
    assert admit(lim, "job-2").admitted


def test_a_crashed_holders_slot_is_reclaimed_once_its_lease_has_passed(store: InMemoryLimitsStore) -> None:
    # Given a slot held by a consumer that died (never released) with a lease until T0 + 30 s
    lim = limiter(store, hook=TypeLimit(concurrency=1))
    assert admit(lim, "crashed").admitted

    # When another job asks before and after that lease
    before = admit(lim, "job-2", now_ms=T0_MS + LEASE_MS)
    after = admit(lim, "job-2", now_ms=T0_MS + LEASE_MS + 1)

    # Then it waits before, and is admitted after
    assert not before.admitted
    assert after.admitted


def test_a_duplicate_that_loses_the_claim_releases_only_its_own_slot(store: InMemoryLimitsStore) -> None:
    # Given two copies of one job's message both admitted (concurrency 2), then one loses the claim race
    lim = limiter(store, hook=TypeLimit(concurrency=2))
    winner = admit(lim, "job-1")
    loser = admit(lim, "job-1")
    assert winner.admitted and loser.admitted

    # When the loser releases
    loser.release()

    # Then the winner still holds its slot
    assert store.held_slots(T0_MS) == 1
    winner.release()
    assert store.held_slots(T0_MS) == 0


def test_limits_are_per_tenant_by_default_and_shared_with_global_scope(store: InMemoryLimitsStore) -> None:
    # Given a per-tenant and a global type, each with a concurrency of 1, held by tenant t1
    lim = limiter(store, hook=TypeLimit(concurrency=1), fetch=TypeLimit(concurrency=1, scope="global"))
    assert admit(lim, "a1", tenant="t1", job_type="hook").admitted
    assert admit(lim, "a2", tenant="t1", job_type="fetch").admitted

    # When tenant t2 asks for both
    # Then the per-tenant type admits it and the global one does not
    assert admit(lim, "b1", tenant="t2", job_type="hook").admitted
    assert not admit(lim, "b2", tenant="t2", job_type="fetch").admitted


def test_rate_admits_the_limit_per_window_and_starts_again_in_the_next(store: InMemoryLimitsStore) -> None:
    # Given 3 starts per second
    lim = limiter(store, hook=TypeLimit(rate_per_second=3))

    # When five jobs ask within one second, then one more in the next second
    within = [admit(lim, f"job-{i}", now_ms=T0_MS + 100 * i).admitted for i in range(5)]
    next_second = admit(lim, "job-5", now_ms=T0_MS + 1000).admitted

    # Then three of the five start, and the next second has a fresh budget
    assert within == [True, True, True, False, False]
    assert next_second


def test_refused_jobs_are_scheduled_over_the_following_windows(store: InMemoryLimitsStore) -> None:
    # Given 2 starts per second, used up at T0 + 0.5 s
    lim = limiter(store, hook=TypeLimit(rate_per_second=2))
    now = T0_MS + 500
    assert admit(lim, "a", now_ms=now).admitted and admit(lim, "b", now_ms=now).admitted

    # When seven more ask in that window
    waits = [admit(lim, f"w{i}", now_ms=now).retry_after_seconds for i in range(7)]

    # Then they are sent back 3 per window (2 starts + a quarter, rounded up) into the following windows
    assert waits == [1, 1, 1, 2, 2, 2, 3]


def test_a_schedule_left_behind_restarts_at_the_next_window(store: InMemoryLimitsStore) -> None:
    # Given 1 start per second and a job that waited at T0 (its place: the next window)
    lim = limiter(store, hook=TypeLimit(rate_per_second=1))
    assert admit(lim, "a").admitted
    assert admit(lim, "b").retry_after_seconds == 1

    # When, ten seconds later, the window is used up and another job is refused
    assert admit(lim, "c", now_ms=T0_MS + 10_000).admitted
    late = admit(lim, "d", now_ms=T0_MS + 10_000)

    # Then it waits for the next window, not behind the old places
    assert late.retry_after_seconds == 1


def test_a_long_backlog_waits_at_most_the_longest_sqs_delay(store: InMemoryLimitsStore) -> None:
    # Given 1 start per second used up, and 2,000 places already taken in the schedule
    lim = limiter(store, hook=TypeLimit(rate_per_second=1))
    assert admit(lim, "a").admitted
    for i in range(2000):
        admit(lim, f"w{i}")

    # When one more is refused, Then its wait is capped at 900 s (it will be refused again and take a new place)
    assert admit(lim, "last").retry_after_seconds == 900


def test_a_fractional_rate_counts_in_longer_windows(store: InMemoryLimitsStore) -> None:
    # Given 0.5 starts per second (1 per 2 s windows)
    lim = limiter(store, hook=TypeLimit(rate_per_second=0.5))

    # When jobs ask at 0 s, 1 s and 2 s
    answers = [admit(lim, f"j{i}", now_ms=T0_MS + 1000 * i) for i in range(3)]

    # Then the first starts, the second waits for the next window (1 s away), the third starts
    assert [a.admitted for a in answers] == [True, False, True]
    assert answers[1].retry_after_seconds == 1


def test_a_refused_rate_token_gives_the_slot_back(store: InMemoryLimitsStore) -> None:
    # Given concurrency 5 and 1 start per second, the second used
    lim = limiter(store, hook=TypeLimit(rate_per_second=1, concurrency=5))
    assert admit(lim, "first").admitted

    # When a second job asks in the same second
    refused = admit(lim, "second")

    # Then it waits for the rate, and holds no slot while it waits
    assert not refused.admitted
    assert store.held_slots(T0_MS) == 1


def test_a_concurrency_refusal_takes_no_rate_token(store: InMemoryLimitsStore) -> None:
    # Given concurrency 1 held, and a rate of 2 per second
    lim = limiter(store, hook=TypeLimit(rate_per_second=2, concurrency=1))
    first = admit(lim, "first")

    # When a second job is refused for concurrency, then the first ends and a third asks in the same second
    assert not admit(lim, "second").admitted
    first.release()

    # Then the third still gets the window's second token
    assert admit(lim, "third").admitted


def test_a_storage_error_on_release_is_not_raised(store: InMemoryLimitsStore) -> None:
    # Given an admitted job and a store that fails to release
    lim = limiter(store, hook=TypeLimit(concurrency=1))
    admission = admit(lim, "job-1")
    store.fail_release = True

    # When the attempt ends, Then release does not raise (the lease frees the slot later)
    admission.release()


def test_concurrent_admissions_never_exceed_the_concurrency(store: InMemoryLimitsStore) -> None:
    # Given concurrency 3 and 8 threads repeatedly asking, holding and releasing
    lim = limiter(store, hook=TypeLimit(concurrency=3))
    running = 0
    peak = 0
    lock = threading.Lock()

    def worker(n: int) -> None:
        nonlocal running, peak
        for i in range(50):
            admission = admit(lim, f"job-{n}-{i}")
            if not admission.admitted:
                continue
            with lock:
                running += 1
                peak = max(peak, running)
            with lock:
                running -= 1
            admission.release()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the limit was reached at most, and every slot is free again
    assert 1 <= peak <= 3
    assert store.held_slots(T0_MS) == 0


# --- the DynamoDB store's error handling ---


def _stubbed() -> tuple[DynamoLimitsStore, Stubber]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return DynamoLimitsStore(client, "job-limits"), Stubber(client)


def test_a_lost_condition_is_an_answer_not_an_error() -> None:
    store, stub = _stubbed()
    stub.add_client_error("update_item", "ConditionalCheckFailedException")
    stub.add_client_error("put_item", "ConditionalCheckFailedException")
    stub.add_client_error("delete_item", "ConditionalCheckFailedException")
    with stub:
        assert store.take_token("t#hook#rate#1", 5, 100) is False
        assert store.claim_slot("t#hook#slot#0", "me", 1, 2, 3) is False
        assert store.release_slot("t#hook#slot#0", "me") is False


@pytest.mark.parametrize("call", ["take_token", "reserve", "read_slots", "claim_slot", "release_slot"])
def test_sdk_errors_become_storage_errors(call: str) -> None:
    store, stub = _stubbed()
    operation = {
        "take_token": "update_item",
        "reserve": "update_item",
        "read_slots": "batch_get_item",
        "claim_slot": "put_item",
        "release_slot": "delete_item",
    }[call]
    stub.add_client_error(operation, "ProvisionedThroughputExceededException")
    args: dict[str, tuple[Any, ...]] = {
        "take_token": ("k", 5, 100),
        "reserve": ("k", 10, 100),
        "read_slots": (["k"],),
        "claim_slot": ("k", "me", 1, 2, 3),
        "release_slot": ("k", "me"),
    }
    with stub, pytest.raises(StorageError):
        getattr(store, call)(*args[call])
