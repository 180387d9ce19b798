"""Per-key rate limits, enforced by the API function (API Gateway documents usage-plan throttling as best-effort,
and the authorizer's answers are cached, so it cannot count).

Semantics: a key with rate ``r`` requests per second and burst ``b`` is admitted ``b`` requests in each window of
``b / r`` seconds (windows aligned on the epoch, counted for all of the API's containers together in the limits
table). Over it, ``429 RATE_LIMITED`` with ``Retry-After``: the whole seconds until the window ends (at least 1).
So a key averages at most ``r`` per second, and may send ``b`` at once.

Cost: a container does not write once per request. It counts the key's requests itself and reports them to the
shared count in blocks of ``max(1, b // 20)`` (one ADD, which returns the window's total so far); it admits a
request while that total, as of its last report, plus what it has not reported yet stays under ``b``. A busy key
costs one write per block per container (a twentieth of a write per request at the default burst of 200); a key
that never sends a block's worth in one window, in any container, costs no write at all, and a refused request
costs none. The price is a bounded overshoot: each container may admit up to a block it has not reported, so with
``c`` containers serving one key a window admits at most ``b + c x max(1, b / 20)`` (exactly ``b`` from one
container).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.dal.key_rates import WindowCounts

# Window items outlive their window by this much (DynamoDB TTL deletes them later still).
_EXPIRY_MARGIN_S = 60
BLOCK_FRACTION = 20


@dataclass
class _Window:
    index: int = -1
    known_total: int = 0  # the window's count across containers, as of this container's last report
    unreported: int = 0  # admitted here since that report


def window_seconds(rate: float, burst: int) -> float:
    return max(burst, 1) / rate


def block_size(burst: int) -> int:
    return max(1, burst // BLOCK_FRACTION)


class KeyRateLimiter:
    def __init__(self, counts: WindowCounts, clock: Callable[[], float] = time.time) -> None:
        self._counts = counts
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def retry_after(self, key_id: str, rate: float, burst: int) -> int | None:
        """None when the request is admitted; otherwise the seconds to wait (an integer, at least 1)."""
        if rate <= 0 or burst <= 0:
            return None  # no limit known for this key (the authorizer gave none)
        now = self._clock()
        length = window_seconds(rate, burst)
        index = int(now // length)
        with self._lock:
            window = self._windows.get(key_id)
            if window is None or window.index != index:  # what was not reported of an ended window is dropped
                window = self._windows[key_id] = _Window(index=index)
            if window.known_total + window.unreported >= burst:
                return max(1, math.ceil((index + 1) * length - now))
            window.unreported += 1
            if window.unreported >= block_size(burst):
                expires = int((index + 1) * length) + _EXPIRY_MARGIN_S
                pk = f"key#{key_id}#{round(length * 1000)}#{index}"
                window.known_total = self._counts.add(pk, window.unreported, expires)
                window.unreported = 0
            return None
