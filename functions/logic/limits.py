"""Per-type rate and concurrency limits, shared by every consumer through DynamoDB (dal/limits.py).

The consumer asks ``admit`` before it counts an attempt; a job that is not admitted waits (its message comes back
after ``retry_after_seconds``) and does not burn an attempt. ``release`` is called once the attempt has ended.

Configuration (``Settings.type_limits``, JSON; ``JOBS_TYPE_LIMITS``, locally ``JOBS_LOCAL_TYPE_LIMITS``)::

    {"webhook-delivery": {"ratePerSecond": 5, "concurrency": 2},
     "fetch": {"concurrency": 4, "scope": "global"}}

- ``ratePerSecond``: starts per second, a number > 0 and <= 1000. Fractional rates are allowed when some window of
  at most 60 whole seconds holds a whole number of starts: 0.5 is 1 start per 2 s, 2.5 is 5 per 2 s, 0.2 is 1 per
  5 s; 0.3 is 3 per 10 s (bursty: up to 3 at once). 0.37 has no such window (37 per 100 s) and is refused.
- ``concurrency``: attempts running at once, a whole number from 1 to 100.
- ``scope``: ``"tenant"`` (the default: each tenant has its own budget) or ``"global"`` (one budget shared by all).

At least one of ``ratePerSecond`` and ``concurrency`` is required; any other key, a type that is not registered, or a
bad value is refused with a message naming the entry (``InvalidTypeLimits``): the consumer logs it and runs nothing
until it is fixed. ``parse_type_limits`` is the check for start-up code (the local stack, the CDK app) to call.
Types without an entry never touch DynamoDB.

How each limit is kept:

- Rate: fixed windows of W seconds (W = 1 for whole rates, otherwise the smallest W above), one item per window,
  counted with a conditional ADD (``n < limit``): exact across consumers, and it lets at most ``limit`` start per
  window. Like every fixed window it allows a burst of up to 2x the limit across a window boundary; over any run
  longer than a few windows the rate holds. A token bucket would smooth that burst but needs a read-modify-write of
  (tokens, last refill) per admission, i.e. an optimistic retry loop under contention; one conditional ADD per
  start is simpler and never retries. A refused job takes the next place in a shared waiting schedule (one counter
  item, ``ADD`` conditional on not lagging behind the current window, else restarted there): places map to the
  following windows, 1.25x as many places as starts per window, and the job's message comes back during its
  place's window. So a backlog is sent back at the rate it can start (slightly more, so that a window still
  fills when a job is late or held back by its concurrency), each job is refused about once instead of once per
  window it waits, and the waiting jobs are spread by the schedule itself: a random jitter would have to be a whole
  second (SQS delays are whole seconds) and would only move a job out of its window. Jobs sent back that still find
  their window full (new jobs took it) take a new place.
- Concurrency: ``concurrency`` slot items. Admission reads them in one consistent BatchGetItem, then takes a free or
  expired one, starting at a random slot, with a conditional put (``attribute_not_exists(holder) OR leaseUntil <
  :now OR holder = :me``). The lease is the job's own lease (``hold_until_ms``): a consumer that crashed holding a
  slot frees it when that lease passes, which is also when a redelivery may take the job over. The holder is the
  job id plus a random token per admission, so a duplicate message that lost the claim race releases only its own
  slot, never the winner's. A full type waits 1-2 s (with jitter) and tries again.

The slot is taken first, then the rate token; a refused token gives the slot back. A token taken by a claim that then
loses its race is not returned (the count errs on the safe side). Storage errors on admission propagate (the
message is retried by SQS: fail closed); on release they are logged and the lease frees the slot.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger

from functions.dal.limits import DynamoLimitsStore, LimitsStore
from functions.models.errors import StorageError
from functions.settings import Settings

logger = Logger(child=True)

MAX_RATE_PER_SECOND = 1000
MAX_WINDOW_SECONDS = 60
MAX_CONCURRENCY = 100
# SQS DelaySeconds cannot exceed 15 minutes.
MAX_RETRY_AFTER_SECONDS = 900
# Rate windows are kept this long after they end (TTL), slots this long after their lease.
WINDOW_TTL_SECONDS = 60
SLOT_TTL_SECONDS = 86_400
# Refused jobs are sent back this many times a window's starts (see waiting_places).
OVERBOOKING = 1.25
_KEYS = frozenset({"ratePerSecond", "concurrency", "scope"})


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
    def is_limited(self, job_type: str) -> bool:
        """Whether ``admit`` may refuse a job of this type (False: it always admits, touching no store)."""
        ...


class NoLimits:
    def admit(self, tenant: str, job_type: str, job_id: str, now_ms: int, hold_until_ms: int) -> Admission:
        return ADMITTED

    def is_limited(self, job_type: str) -> bool:
        return False


# --- configuration ---


class InvalidTypeLimits(ValueError):
    """``type_limits`` is not a valid configuration; the message names the bad entry."""


@dataclass(frozen=True)
class TypeLimit:
    rate_per_second: float | None = None
    concurrency: int | None = None
    scope: Literal["tenant", "global"] = "tenant"

    @property
    def window(self) -> tuple[int, int] | None:
        """(window seconds, starts allowed per window) of the rate limit, or None without one."""
        if self.rate_per_second is None:
            return None
        window = rate_window(self.rate_per_second)
        assert window is not None  # checked by parse_type_limits
        return window


def rate_window(rate: float) -> tuple[int, int] | None:
    """The smallest window of whole seconds (<= 60) holding a whole number of starts at ``rate``, with that number."""
    for seconds in range(1, MAX_WINDOW_SECONDS + 1):
        starts = rate * seconds
        whole = round(starts)
        if whole >= 1 and abs(starts - whole) < 1e-9:
            return seconds, whole
    return None


def parse_type_limits(raw: str, known_types: Iterable[str] | None = None) -> dict[str, TypeLimit]:
    """Parse and check the ``type_limits`` JSON (empty: no limits). Raises ``InvalidTypeLimits`` naming the entry."""
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidTypeLimits(f"type_limits is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidTypeLimits('type_limits must be a JSON object: {"<job type>": {"ratePerSecond": .., ...}}')
    known = set(known_types) if known_types is not None else None
    limits: dict[str, TypeLimit] = {}
    for name, entry in config.items():
        where = f"type_limits['{name}']"
        if known is not None and name not in known:
            raise InvalidTypeLimits(f"{where}: '{name}' is not a job type (known: {', '.join(sorted(known))})")
        limits[name] = _parse_entry(where, entry)
    return limits


def _parse_entry(where: str, entry: Any) -> TypeLimit:
    if not isinstance(entry, dict):
        raise InvalidTypeLimits(f"{where} must be an object with ratePerSecond and/or concurrency")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise InvalidTypeLimits(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    if "ratePerSecond" not in entry and "concurrency" not in entry:
        raise InvalidTypeLimits(f"{where} needs ratePerSecond and/or concurrency")
    rate = entry.get("ratePerSecond")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
            raise InvalidTypeLimits(f"{where}.ratePerSecond must be a number, got {rate!r}")
        if not 0 < rate <= MAX_RATE_PER_SECOND:
            raise InvalidTypeLimits(f"{where}.ratePerSecond must be > 0 and <= {MAX_RATE_PER_SECOND}, got {rate}")
        if rate_window(float(rate)) is None:
            raise InvalidTypeLimits(
                f"{where}.ratePerSecond {rate} has no window of at most {MAX_WINDOW_SECONDS} whole seconds holding "
                "a whole number of starts (use e.g. 0.5, 0.25, 1.5, 2)"
            )
    concurrency = entry.get("concurrency")
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise InvalidTypeLimits(f"{where}.concurrency must be a whole number, got {concurrency!r}")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidTypeLimits(f"{where}.concurrency must be from 1 to {MAX_CONCURRENCY}, got {concurrency}")
    scope = entry.get("scope", "tenant")
    if scope not in ("tenant", "global"):
        raise InvalidTypeLimits(f'{where}.scope must be "tenant" or "global", got {scope!r}')
    return TypeLimit(
        rate_per_second=float(rate) if rate is not None else None,
        concurrency=concurrency,
        scope=scope,
    )


# --- the limiter ---


class DynamoLimiter:
    """Admission against limits whose counts live in a shared store (one DynamoDB table)."""

    def __init__(self, store: LimitsStore, limits: dict[str, TypeLimit], rng: random.Random | None = None) -> None:
        self._store = store
        self._limits = limits
        self._rng = rng or random.Random()

    def is_limited(self, job_type: str) -> bool:
        return job_type in self._limits

    def admit(self, tenant: str, job_type: str, job_id: str, now_ms: int, hold_until_ms: int) -> Admission:
        limit = self._limits.get(job_type)
        if limit is None:
            return ADMITTED
        prefix = f"{'*' if limit.scope == 'global' else tenant}#{job_type}"
        release: Callable[[], None] = _nothing
        if limit.concurrency is not None:
            holder = f"{job_id}:{uuid.uuid4().hex[:12]}"
            slot = self._take_slot(prefix, limit.concurrency, holder, now_ms, max(hold_until_ms, now_ms + 1000))
            if slot is None:
                return Admission(admitted=False, retry_after_seconds=self._rng.randint(1, 2))
            release = _Release(self._store, slot, holder)
        window = limit.window
        if window is not None:
            retry_after = self._take_token(prefix, window, now_ms)
            if retry_after is not None:
                release()
                return Admission(admitted=False, retry_after_seconds=retry_after)
        return Admission(admitted=True, release=release)

    def _take_slot(self, prefix: str, concurrency: int, holder: str, now_ms: int, lease_until_ms: int) -> str | None:
        keys = [f"{prefix}#slot#{i}" for i in range(concurrency)]
        held = self._store.read_slots(keys)
        start = self._rng.randrange(concurrency)
        candidates = [
            key
            for key in keys[start:] + keys[:start]
            if key not in held or held[key].lease_until_ms < now_ms or held[key].holder == holder
        ]
        expires_at = lease_until_ms // 1000 + SLOT_TTL_SECONDS
        for key in candidates:
            # Another consumer may take it between the read and this write: the condition decides, then the next.
            if self._store.claim_slot(key, holder, now_ms, lease_until_ms, expires_at):
                return key
        return None

    def _take_token(self, prefix: str, window: tuple[int, int], now_ms: int) -> int | None:
        """Count this start in the current window; None when counted, else the seconds to wait."""
        seconds, per_window = window
        number = now_ms // 1000 // seconds  # windows since the epoch
        window_start = number * seconds
        expires_at = window_start + seconds + WINDOW_TTL_SECONDS
        if self._store.take_token(f"{prefix}#rate#{window_start}", per_window, expires_at):
            return None
        # Refused: take a place in the waiting schedule; place p comes back in window p // places (from the next).
        places = waiting_places(per_window)
        schedule_expires_at = now_ms // 1000 + MAX_RETRY_AFTER_SECONDS + WINDOW_TTL_SECONDS
        place = self._store.reserve(f"{prefix}#rate#next", (number + 1) * places, schedule_expires_at)
        wait = math.ceil((place // places * seconds * 1000 - now_ms) / 1000)
        return min(MAX_RETRY_AFTER_SECONDS, max(1, wait))


def waiting_places(per_window: int) -> int:
    """Waiting jobs sent back per future window: the window's starts plus a quarter, so that a window still fills
    when some of its jobs are late, held back by the concurrency limit, or gone (the extra ones wait again)."""
    return math.ceil(per_window * OVERBOOKING)


@dataclass
class _Release:
    store: LimitsStore
    slot: str
    holder: str
    done: bool = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            if not self.store.release_slot(self.slot, self.holder):
                logger.warning("concurrency slot was no longer held at release", extra={"slot": self.slot})
        except StorageError as exc:
            # Not fatal: the slot frees itself when its lease passes.
            logger.warning("concurrency slot not released; its lease will free it", extra={"error": str(exc)})


def limiter_from_settings(settings: Settings, ddb: Any) -> Limiter:
    """The limiter ``settings.type_limits`` describes, its state in ``settings.limits_table``; NoLimits when empty.

    Raises ``InvalidTypeLimits`` (naming the entry) when the configuration is not valid."""
    from functions.logic.job_types import registered_types

    try:
        limits = parse_type_limits(settings.type_limits, registered_types())
    except InvalidTypeLimits as exc:
        logger.error("invalid type_limits: fix the configuration (JOBS_TYPE_LIMITS)", extra={"error": str(exc)})
        raise
    if not limits:
        return NoLimits()
    return DynamoLimiter(DynamoLimitsStore(ddb, settings.limits_table), limits)
