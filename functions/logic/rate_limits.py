"""Per-key rate limits, enforced by the API function (API Gateway documents usage-plan throttling as best-effort,
and the authorizer's answers are cached, so it cannot count).

Semantics: a key with rate ``r`` requests per second and burst ``b`` admits at most ``b`` requests in each window
of ``b / r`` seconds (windows aligned on the epoch, shared by every container through the limits table). Over it,
``429 RATE_LIMITED`` with ``Retry-After``: the whole seconds until the window ends. So a key averages at most ``r``
per second, and may send ``b`` at once.

Cost: a container does not write once per request. It leases tokens in blocks sized to its own recent traffic (a
quarter of what it admitted in the previous window, at most a twentieth of the burst, at least 1), so a busy key
costs one write per block. The window's count never exceeds ``b`` (each lease is a conditional ADD): the service
never admits more than the limit. What a container leased and did not use is lost to the others for that window,
so with ``c`` containers busy on one key, the key may be refused up to ``c x (block - 1)`` requests below ``b`` in
a window (at most ``c x b / 20``). Once a window is full, a container refuses the rest of it without a write.
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
MAX_BLOCK_FRACTION = 20


@dataclass
class _Lease:
    window: int = -1
    remaining: int = 0
    admitted: int = 0
    previous_admitted: int = 0
    full: bool = False  # the window had no room left: refuse until it ends, without asking again


def window_seconds(rate: float, burst: int) -> float:
    return max(burst, 1) / rate


class KeyRateLimiter:
    def __init__(self, counts: WindowCounts, clock: Callable[[], float] = time.time) -> None:
        self._counts = counts
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def retry_after(self, key_id: str, rate: float, burst: int) -> int | None:
        """None when the request is admitted; otherwise the seconds to wait (an integer, at least 1)."""
        if rate <= 0 or burst <= 0:
            return None  # no limit known for this key (the authorizer gave none)
        now = self._clock()
        length = window_seconds(rate, burst)
        window = int(now // length)
        with self._lock:
            lease = self._leases.setdefault(key_id, _Lease())
            if lease.window != window:
                previous = lease.admitted if lease.window == window - 1 else 0
                self._leases[key_id] = lease = _Lease(window=window, previous_admitted=previous)
            if lease.remaining == 0 and not lease.full:
                want = max(1, min(lease.previous_admitted // 4, burst // MAX_BLOCK_FRACTION))
                window_ms = round(length * 1000)
                expires = int((window + 1) * length) + _EXPIRY_MARGIN_S
                lease.remaining = self._counts.take(f"key#{key_id}#{window_ms}#{window}", want, burst, expires)
                lease.full = lease.remaining == 0
            if lease.remaining == 0:
                return max(1, math.ceil((window + 1) * length - now))
            lease.remaining -= 1
            lease.admitted += 1
            return None
