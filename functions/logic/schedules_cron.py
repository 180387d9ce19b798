"""When a schedule runs: its cron expression and IANA time zone, read with croniter and zoneinfo.

The expression is five fields (minute hour day-of-month month day-of-week) with ``*``, lists, ranges and steps, or one
of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``. ``CRON_PATTERN`` states that grammar (the OpenAPI document
carries it, so what it calls valid is what is accepted); croniter then reads it. Seconds fields, other aliases
(``@reboot``, ``@yearly``) and croniter's extensions (``L``, ``W``, ``#``, ``?``) are refused.

Run times are computed in the zone's wall time and then placed on the time line, so daylight-saving changes neither
skip nor repeat a run:

- a wall time that does not exist (spring forward: 02:30 on the night clocks go from 02:00 to 03:00) runs at the
  same distance past the change (03:30), once;
- a wall time that happens twice (fall back: 01:30 when clocks go from 02:00 back to 01:00) runs at its first
  occurrence only; so in that repeated hour a schedule every 15 minutes pauses for an hour rather than running twice.

Every time is an instant in epoch milliseconds; the API shows them as ISO timestamps in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from functions.logic.clock import epoch_ms
from functions.models.errors import InvalidSchedule

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly")
DEFAULT_TIMEZONE = "UTC"
CRON_MAX_LENGTH = 256
# Looking for a run: how many wall times in a row may fall on the time line before the instant asked about (a
# repeated hour's first occurrence, a nonexistent time moved forward). A few at most; bounds a pathological case.
_MAX_SKIPPED = 512

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _any_case(word: str) -> str:
    return "".join(f"[{char.upper()}{char}]" for char in word)


def _field(value: str) -> str:
    element = rf"(?:\*|{value}(?:-{value})?)(?:/[1-9][0-9]?)?"
    return rf"{element}(?:,{element})*"


_MINUTE = r"(?:[0-5]?[0-9])"
_HOUR = r"(?:[01]?[0-9]|2[0-3])"
_DAY_OF_MONTH = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = rf"(?:0?[1-9]|1[0-2]|{'|'.join(_any_case(name) for name in _MONTHS)})"
_DAY_OF_WEEK = rf"(?:[0-7]|{'|'.join(_any_case(name) for name in _DAYS)})"
# The whole grammar, in the regex dialect both Python and JSON Schema (ECMA-262) read the same way.
CRON_PATTERN = (
    rf"^(?:@(?:hourly|daily|weekly|monthly)|{_field(_MINUTE)} +{_field(_HOUR)} +{_field(_DAY_OF_MONTH)}"
    rf" +{_field(_MONTH)} +{_field(_DAY_OF_WEEK)})$"
)
CRON_MESSAGE = (
    "'cron' must be five fields (minute hour day-of-month month day-of-week) with *, lists, ranges and steps, "
    "or one of @hourly, @daily, @weekly, @monthly"
)
TIMEZONE_MESSAGE = "'timezone' must be an IANA time zone name, such as UTC or Europe/Paris"
# An expression of the grammar whose days never come (31 February): refused, as it would never run.
NEVER_RUNS = "never runs"


def _runs(expression: str, start: datetime) -> Any:
    """croniter over ``expression`` from ``start`` (imported on first use: ~25 ms that only schedules need)."""
    from croniter import croniter

    return croniter(expression, start)


def _cron_error() -> type[Exception]:
    from croniter.croniter import CroniterError

    return CroniterError


@cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA zone name this service accepts: the tzdata package's list (the same on Lambda and locally)."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return tuple(sorted(name for name in listed if name))


def check_cron(expression: object) -> str:
    """``expression``, a valid cron expression (``INVALID_SCHEDULE`` naming ``cron`` otherwise)."""
    if not isinstance(expression, str) or len(expression) > CRON_MAX_LENGTH:
        raise InvalidSchedule(CRON_MESSAGE, details={"field": "cron"})
    if not re.fullmatch(CRON_PATTERN, expression):
        raise InvalidSchedule(CRON_MESSAGE, details={"field": "cron"})
    try:
        _runs(expression, datetime(2000, 1, 1)).get_next(datetime)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        message = f"'cron' {expression!r} {NEVER_RUNS}: no date matches its day-of-month and month fields"
        raise InvalidSchedule(message, details={"field": "cron"}) from exc
    return expression


def check_timezone(name: object) -> str:
    """``name``, an IANA zone this service knows (``INVALID_SCHEDULE`` naming ``timezone`` otherwise)."""
    if not isinstance(name, str) or name not in _known_zones():
        raise InvalidSchedule(TIMEZONE_MESSAGE, details={"field": "timezone"})
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(TIMEZONE_MESSAGE, details={"field": "timezone"}) from exc
    return name


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(timezone_names())


def _instant(wall: datetime, zone: ZoneInfo) -> int:
    """A wall time of ``zone`` on the time line (ms): a repeated one at its first occurrence (fold 0), a missing one
    as far past the change as it is past the last existing minute (zoneinfo's fold-0 reading of a gap)."""
    return epoch_ms(wall.replace(tzinfo=zone, fold=0))


def _wall(at_ms: int, zone: ZoneInfo) -> datetime:
    """The zone's wall time at ``at_ms``, to the minute, without a zone (croniter counts in wall time)."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    return local.replace(tzinfo=None, second=0, microsecond=0)


def next_run_after(expression: str, timezone: str, after_ms: int) -> int:
    """The first run strictly after ``after_ms``."""
    zone = ZoneInfo(timezone)
    runs = _runs(expression, _wall(after_ms, zone))
    for _ in range(_MAX_SKIPPED):
        at = _instant(runs.get_next(datetime), zone)
        if at > after_ms:
            return at
    raise InvalidSchedule(f"'cron' {expression!r} {NEVER_RUNS}", details={"field": "cron"})


def latest_run_at_or_before(expression: str, timezone: str, at_ms: int) -> int | None:
    """The last run at or before ``at_ms`` (None if none in the search's reach)."""
    zone = ZoneInfo(timezone)
    runs = _runs(expression, _wall(at_ms, zone) + timedelta(minutes=1))
    for _ in range(_MAX_SKIPPED):
        try:
            at = _instant(runs.get_prev(datetime), zone)
        except _cron_error():
            return None
        if at <= at_ms:
            return at
    return None


def upcoming(expression: str, timezone: str, after_ms: int, count: int) -> list[int]:
    """The next ``count`` runs after ``after_ms``."""
    runs: list[int] = []
    at = after_ms
    for _ in range(count):
        at = next_run_after(expression, timezone, at)
        runs.append(at)
    return runs
