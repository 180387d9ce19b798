"""Per-key rate limits: a key admits at most its burst per window of burst/rate seconds, across containers, with
tokens leased in blocks (fewer writes than requests) and ``Retry-After`` the seconds to the window's end."""

from __future__ import annotations

import threading

from functions.logic.rate_limits import KeyRateLimiter, window_seconds


class SharedCounts:
    """The limits table's window counts with DynamoDB's semantics: each take is one atomic conditional ADD."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def take(self, key: str, want: int, limit: int, expires_at_s: int) -> int:
        with self._lock:
            self.writes += 1
            room = limit - self.counts.get(key, 0)
            granted = min(want, max(room, 0))
            self.counts[key] = self.counts.get(key, 0) + granted
            return granted


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_window_is_burst_over_rate_seconds() -> None:
    assert window_seconds(100, 200) == 2.0
    assert window_seconds(5, 5) == 1.0


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


def test_containers_together_never_exceed_the_limit() -> None:
    # Given one shared count and five containers of a key with a burst of 100 per window
    counts = SharedCounts()
    clock = Clock(5_000_000.0)
    containers = [KeyRateLimiter(counts, clock) for _ in range(5)]

    # When each container sends 50 requests in the same window
    admitted = sum(1 for limiter in containers for _ in range(50) if limiter.retry_after("k", 50, 100) is None)

    # Then exactly the burst is admitted
    assert admitted == 100


def test_a_busy_container_leases_blocks_so_writes_are_a_fraction_of_requests() -> None:
    # Given a key with a large limit (1,000 per 1 s window) and one busy container
    counts = SharedCounts()
    clock = Clock(7_000_000.0)
    limiter = KeyRateLimiter(counts, clock)
    for _ in range(400):  # a first window at 400 requests
        assert limiter.retry_after("k", 1000, 1000) is None
    first_window_writes = counts.writes

    # When the next window sees the same traffic
    clock.now += 1
    for _ in range(400):
        assert limiter.retry_after("k", 1000, 1000) is None

    # Then the first window wrote once per request, the next once per block of 50 (burst/20): 8 writes
    assert first_window_writes == 400
    assert counts.writes - first_window_writes == 8


def test_a_full_window_is_refused_without_another_write() -> None:
    counts = SharedCounts()
    limiter = KeyRateLimiter(counts, Clock(9_000_000.0))
    assert limiter.retry_after("k", 1, 1) is None
    writes = counts.writes
    assert [limiter.retry_after("k", 1, 1) for _ in range(5)] == [1] * 5
    assert counts.writes == writes + 1  # the one take that found the window full


def test_keys_are_counted_apart_and_a_key_without_limits_is_not_counted() -> None:
    counts = SharedCounts()
    limiter = KeyRateLimiter(counts, Clock(11_000_000.0))
    assert limiter.retry_after("a", 1, 1) is None
    assert limiter.retry_after("b", 1, 1) is None
    assert limiter.retry_after("a", 1, 1) == 1
    assert limiter.retry_after("c", 0, 0) is None
    assert all(not key.startswith("key#c#") for key in counts.counts)
