"""Cron expressions and time zones of recurring schedules: what is accepted, what is refused, and run times."""

from __future__ import annotations

import re

import pytest

from functions.logic import schedules_cron as cron
from functions.logic.clock import iso, parse_iso_ms
from functions.models.errors import InvalidSchedule


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 9-17 * * MON-FRI",
        "0,30 8 1,15 jan-Mar 1-5",
        "0-30/10 */2 * * 7",
        "59 23 31 12 6",
        "5-3 * * * *",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
    ],
)
def test_five_fields_and_the_four_aliases_are_accepted(expression: str) -> None:
    assert cron.check_cron(expression) == expression
    assert re.fullmatch(cron.CRON_PATTERN, expression)  # the document's pattern says the same


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * *",  # a seconds (or year) field
        "@reboot",
        "@yearly",
        "@annually",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "0 0 L * *",
        "0 0 * * MON#2",
        "0 0 ? * *",
        " * * * * *",
        "0 0 31 2 *",  # never comes
        None,
        5,
        "* " * 200,
    ],
)
def test_anything_else_is_invalid_schedule_naming_cron(expression: object) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        cron.check_cron(expression)
    assert refused.value.details == {"field": "cron"}


def test_timezones_are_iana_names_from_tzdata() -> None:
    assert cron.check_timezone("Europe/Paris") == "Europe/Paris"
    assert cron.check_timezone("UTC") == "UTC"
    assert "America/New_York" in cron.timezone_names() and len(cron.timezone_names()) > 400
    for bad in ("Mars/Olympus", "", "utc ", "../etc/passwd", None, 1):
        with pytest.raises(InvalidSchedule) as refused:
            cron.check_timezone(bad)
        assert refused.value.details == {"field": "timezone"}


def test_run_times_follow_the_zones_wall_clock() -> None:
    after = parse_iso_ms("2026-06-01T12:00:00Z")
    assert [iso(at) for at in cron.upcoming("0 9 * * *", "Europe/Paris", after, 2)] == [
        "2026-06-02T07:00:00.000Z",
        "2026-06-03T07:00:00.000Z",
    ]
    assert iso(cron.next_run_after("@hourly", "UTC", after)) == "2026-06-01T13:00:00.000Z"
    latest = cron.latest_run_at_or_before("*/15 * * * *", "UTC", parse_iso_ms("2026-06-01T12:44:59Z"))
    assert latest is not None and iso(latest) == "2026-06-01T12:30:00.000Z"


def test_spring_forward_runs_a_missing_time_once_after_the_change() -> None:
    # 2026-03-08 in New York: 02:00 EST becomes 03:00 EDT; 02:30 does not exist that day
    runs = [iso(at) for at in cron.upcoming("30 2 * * *", "America/New_York", parse_iso_ms("2026-03-07T12:00Z"), 3)]
    assert runs == ["2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z", "2026-03-10T06:30:00.000Z"]


def test_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() -> None:
    # 2026-11-01 in New York: 02:00 EDT becomes 01:00 EST; 01:30 happens twice
    runs = [iso(at) for at in cron.upcoming("30 1 * * *", "America/New_York", parse_iso_ms("2026-10-31T12:00Z"), 3)]
    assert runs == ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z", "2026-11-03T06:30:00.000Z"]
    # And a schedule every half hour never runs the same instant twice nor goes back in time
    times = cron.upcoming("*/30 * * * *", "America/New_York", parse_iso_ms("2026-11-01T04:00Z"), 10)
    assert times == sorted(set(times))
