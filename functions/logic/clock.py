"""Time as the service sees it: epoch milliseconds, and ISO-8601 UTC strings that sort as they read."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], int]


def system_clock() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ms(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def ceil_seconds(ms: int) -> int:
    """Milliseconds as whole seconds, rounded up (SQS delays and visibility are whole seconds), never negative."""
    return max(0, -(-ms // 1000))
