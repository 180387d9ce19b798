"""Pausing a job type, per tenant (``POST /types/{type}/pause`` and ``/resume``).

Jobs of a paused type are accepted as usual and wait with their status unchanged (pending, or scheduled/retrying
until due): the consumer reads the type's flag (``PauseCheck``, cached a few seconds per container) before it
claims an attempt, and puts the message back without counting one, like a job over its type's limit
(logic/consume.py). The flag is one item per tenant and type in the limits table (dal/pauses.py).

How long a paused job's message waits before it is looked at again grows with the pause: a tenth of the time the
type has been paused, from 2 s to 60 s. A short pause is resumed within seconds; a long one costs each waiting job
at most one receive (and one record read) a minute. A job is started at most ``recheck + cache`` seconds after a
resume: 3 s after a 10 s pause, about a minute after a long one.

Standard lanes send a fresh copy and delete the received one, so a pause of any length never counts towards the
queue's maxReceiveCount. The ordered (FIFO) lane keeps the message itself, to keep its group's order: each look
is one receive of the 1,000 its redrive allows, which at the rates above lasts about 16 hours of pause; past that
SQS moves the message to the DLQ and the sweeper, finding the job's mark due with no message left, sends a new one.
While it defers a paused job the consumer keeps the job's sweep mark at least ``MARK_AHEAD_SECONDS`` ahead (one
write per job every quarter of an hour at most), so the sweeper neither re-sends copies of a job that is only
waiting nor gives a retrying one up as orphaned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from functions.dal.pauses import PauseStore
from functions.logic import catalogue
from functions.logic.job_types import registered_types
from functions.models.errors import InvalidType

CACHE_SECONDS = 2.0
MIN_RECHECK_SECONDS = 2
MAX_RECHECK_SECONDS = 60
MARK_AHEAD_SECONDS = 900


def recheck_seconds(paused_at_ms: int, now_ms: int) -> int:
    """Seconds a paused job's message waits before it is looked at again: a tenth of the pause so far, 2-60 s."""
    return max(MIN_RECHECK_SECONDS, min(MAX_RECHECK_SECONDS, (now_ms - paused_at_ms) // 10_000))


def _known(job_type: str) -> str:
    # As POST /hooks/{type}: a type in the path that is not registered is INVALID_TYPE, listing the types.
    if job_type not in registered_types():
        raise InvalidType(f"'type' must be one of: {', '.join(registered_types())}")
    return job_type


def set_paused(store: PauseStore, tenant: str, job_type: str, paused: bool, now_ms: int) -> dict[str, object]:
    """Pause or resume ``job_type`` for ``tenant``; the answer of both routes: ``{type, paused}``."""
    store.set_paused(tenant, _known(job_type), paused, now_ms)
    return {"type": job_type, "paused": paused}


def job_types_for(store: PauseStore, tenant: str) -> list[dict[str, object]]:
    """The catalogue (``GET /types``) with whether each type is paused for ``tenant`` (one batched read)."""
    paused = store.paused_types(tenant, registered_types())
    return [{**info, "paused": info["name"] in paused} for info in catalogue.job_types()]


@dataclass
class PauseCheck:
    """Whether a tenant's type is paused, as the consumer sees it: read through a cache of ``ttl_seconds``."""

    store: PauseStore
    ttl_seconds: float = CACHE_SECONDS
    monotonic: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str], tuple[float, int | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def paused_since(self, tenant: str, job_type: str) -> int | None:
        key = (tenant, job_type)
        now = self.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.ttl_seconds:
            return cached[1]
        since = self.store.paused_since(tenant, job_type)
        with self._lock:
            self._cache[key] = (now, since)
        return since
