"""Per-type rate and concurrency limits (skeleton: admits everything; the real limiter is being built).

The consumer asks ``admit`` before it counts an attempt; a job that is not admitted waits (its message comes back
after ``retry_after_seconds``) and does not burn an attempt. ``release`` is called once the attempt has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.settings import Settings


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after_seconds: int = 1
    # Gives back what admission took (a concurrency slot); safe to call more than once.
    release: Callable[[], None] = field(default=_nothing)


ADMITTED = Admission(admitted=True)


class Limiter(Protocol):
    def admit(self, tenant: str, job_type: str, job_id: str, now_ms: int, hold_until_ms: int) -> Admission: ...


class NoLimits:
    def admit(self, tenant: str, job_type: str, job_id: str, now_ms: int, hold_until_ms: int) -> Admission:
        return ADMITTED


def limiter_from_settings(settings: Settings, ddb: Any) -> Limiter:
    """The limiter the settings describe (``type_limits``), its state in ``settings.limits_table`` [being built]."""
    return NoLimits()
