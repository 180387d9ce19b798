"""Per-key rate limits: a key is admitted its burst per window of burst/rate seconds, counted across containers in
blocks (a fraction of a write per request, none for a quiet key), with a bounded overshoot, and ``Retry-After`` the
seconds to the window's end."""

from __future__ import annotations

import threading

from functions.logic.rate_limits import KeyRateLimiter, block_size, window_seconds


class SharedCounts:
    """The limits table's window counts: each report is one atomic ADD returning the new total."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def add(self, key: str, count: int, expires_at_s: int) -> int:
        with self._lock:
            self.writes += 1
            self.counts[key] = self.counts.get(key, 0) + count
            return self.counts[key]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_window_is_burst_over_rate_seconds_and_blocks_a_twentieth_of_the_burst() -> None:
    assert window_seconds(100, 200) == 2.0
    assert window_seconds(5, 5) == 1.0
    assert (block_size(200), block_size(39), block_size(1)) == (10, 1, 1)


def test_a_key_gets_its_burst_per_window_then_429_with_the_seconds_left() -> None:
    # Given a key of 2 requests/s with a burst of 6 (windows of 3 s), at 0.5 s into a window
    clock = Clock(3_000_000.5)
    limiter = KeyRateLimiter(SharedCounts(), clock)

    # When it sends 8 requests at once
    answers = [limiter.retry_after("k1", 2, 6) for _ in range(8)]

    # Then 6 are admitted and the others told to retry when the window ends (2.5 s -> 3 s, an integer)
    assert answers == [None] * 6 + [3, 3]
    # And the next window admits it again
    clock.now += 3
    assert limiter.retry_after("k1", 2, 6) is None


def test_containers_together_stay_within_the_burst_plus_a_block_each() -> None:
    # Given one shared count and five containers of a key with a burst of 100 per window (blocks of 5)
    counts = SharedCounts()
    clock = Clock(5_000_000.0)
    containers = [KeyRateLimiter(counts, clock) for _ in range(5)]

    # When each container sends 50 requests in the same window, in turn
    admitted = sum(1 for limiter in containers for _ in range(50) if limiter.retry_after("k", 50, 100) is None)

    # Then at least the burst is admitted, and at most a block more per container
    assert 100 <= admitted <= 100 + 5 * block_size(100)


def test_a_small_burst_reports_every_request_and_is_exact_in_one_container() -> None:
    counts = SharedCounts()
    clock = Clock(6_000_000.0)
    alone = KeyRateLimiter(counts, clock)
    assert sum(1 for _ in range(15) if alone.retry_after("k", 10, 10) is None) == 10
    assert counts.writes == 10
    # Across containers, each may admit one more than the others have told it about
    containers = [KeyRateLimiter(counts, clock) for _ in range(4)]
    admitted = sum(1 for _ in range(5) for limiter in containers if limiter.retry_after("j", 10, 10) is None)
    assert 10 <= admitted <= 10 + 4


def test_a_busy_key_writes_once_per_block_and_a_quiet_key_never() -> None:
    # Given a key with the default limits (100/s, burst 200: blocks of 10)
    counts = SharedCounts()
    clock = Clock(7_000_000.0)
    limiter = KeyRateLimiter(counts, clock)

    # When it sends 150 requests in one window, then 9 in each of the next ten windows
    for _ in range(150):
        assert limiter.retry_after("busy", 100, 200) is None
    busy_writes = counts.writes
    for _ in range(10):
        clock.now += 2
        for _ in range(9):
            assert limiter.retry_after("quiet", 100, 200) is None

    # Then the busy window wrote once per 10 requests, and the quiet windows not at all
    assert busy_writes == 15
    assert counts.writes == busy_writes


def test_refused_requests_cost_no_write() -> None:
    counts = SharedCounts()
    limiter = KeyRateLimiter(counts, Clock(9_000_000.0))
    assert limiter.retry_after("k", 1, 1) is None
    writes = counts.writes
    assert [limiter.retry_after("k", 1, 1) for _ in range(5)] == [1] * 5
    assert counts.writes == writes


def test_keys_are_counted_apart_and_a_key_without_limits_is_not_counted() -> None:
    counts = SharedCounts()
    limiter = KeyRateLimiter(counts, Clock(11_000_000.0))
    assert limiter.retry_after("a", 1, 1) is None
    assert limiter.retry_after("b", 1, 1) is None
    assert limiter.retry_after("a", 1, 1) == 1
    assert limiter.retry_after("c", 0, 0) is None
    assert all(not key.startswith("key#c#") for key in counts.counts)
