"""Time as the service sees it: epoch milliseconds, and ISO-8601 UTC strings that sort as they read."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def system_clock() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    # Integer arithmetic: exact to the millisecond, and a few times faster than going through datetime.
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_iso_ms(value: str) -> int:
    return epoch_ms(datetime.fromisoformat(value))


def epoch_ms(moment: datetime) -> int:
    """A timezone-aware moment as epoch milliseconds, exactly: ``timestamp() * 1000`` is a float and can land
    one millisecond short (``...123`` read back as ``...122``)."""
    elapsed = moment - _EPOCH
    return (elapsed.days * 86_400 + elapsed.seconds) * 1000 + elapsed.microseconds // 1000


def ceil_seconds(ms: int) -> int:
    """Milliseconds as whole seconds, rounded up (SQS delays and visibility are whole seconds), never negative."""
    return max(0, -(-ms // 1000))
