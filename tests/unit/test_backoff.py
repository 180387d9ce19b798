"""backoff_seconds: exponential with equal jitter, capped, whole seconds for SQS visibility."""

from __future__ import annotations

import math
import random

import pytest

from functions.logic.backoff import backoff_seconds


class _ExtremeRng(random.Random):
    """Always draws the low (or high) end of the jitter range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize("attempt", range(1, 12))
@pytest.mark.parametrize(("base", "cap"), [(1, 4), (2, 300), (5, 60)])
def test_backoff_stays_between_half_the_ceiling_and_the_ceiling(attempt: int, base: float, cap: float) -> None:
    # Given the ceiling for this attempt: base doubled per attempt, never above the cap
    ceiling = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(attempt * 1000 + base)
    for _ in range(200):
        # When a delay is drawn
        delay = backoff_seconds(attempt, base, cap, rng)
        # Then it is a whole number of seconds within [ceiling/2, ceiling] and at least one second
        assert isinstance(delay, int)
        assert delay >= 1
        assert delay >= ceiling / 2
        assert delay <= ceiling


@pytest.mark.parametrize("attempt", [1, 5, 20, 25])
def test_backoff_jitter_extremes_are_exactly_half_and_full_ceiling(attempt: int) -> None:
    # Given base 2 s and cap 300 s
    ceiling = min(300, 2 * 2 ** (attempt - 1))
    # When the jitter draws its lowest and its highest value
    low = backoff_seconds(attempt, 2, 300, _ExtremeRng(high=False))
    high = backoff_seconds(attempt, 2, 300, _ExtremeRng(high=True))
    # Then the delays are ceil(ceiling/2) and the ceiling itself
    assert low == math.ceil(ceiling / 2)
    assert high == ceiling


def test_backoff_never_exceeds_the_cap_even_for_large_attempts() -> None:
    # Given a cap of 4 s (the local default)
    rng = random.Random(7)
    # When attempts go far beyond the point where base*2^n passes the cap
    delays = [backoff_seconds(attempt, 1, 4, rng) for attempt in range(1, 26) for _ in range(20)]
    # Then no delay is above the cap, and late attempts sit in [cap/2, cap]
    assert max(delays) == 4
    assert min(delays[-100:]) >= 2


def test_backoff_is_at_least_one_second_for_a_tiny_base() -> None:
    # Given a base far below one second
    # When the first attempt's delay is drawn at the jitter's low end
    delay = backoff_seconds(1, 0.01, 4, _ExtremeRng(high=False))
    # Then SQS still gets a whole, positive second
    assert delay == 1


def test_backoff_grows_with_the_attempt_number() -> None:
    # Given the lowest jitter, so only the exponential part varies
    rng = _ExtremeRng(high=False)
    # When attempts 1..6 are drawn with base 2 and a high cap
    delays = [backoff_seconds(attempt, 2, 1000, rng) for attempt in range(1, 7)]
    # Then each delay doubles the previous one
    assert delays == [1, 2, 4, 8, 16, 32]


def test_backoff_uses_the_module_random_when_no_rng_is_given() -> None:
    # Given the global random generator seeded twice the same way
    random.seed(42)
    first = [backoff_seconds(6, 2, 300) for _ in range(10)]
    random.seed(42)
    second = [backoff_seconds(6, 2, 300) for _ in range(10)]
    # Then the draws come from it (reproducible) and are jittered (not all equal)
    assert first == second
    assert len(set(first)) > 1
