"""Timestamps: ISO-8601 UTC with milliseconds, exact for every epoch millisecond the service can see."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from functions.logic.clock import iso, parse_iso_ms

YEAR_10000_MS = 253_402_300_800_000


@given(st.integers(min_value=0, max_value=YEAR_10000_MS - 1))
def test_iso_is_exact_to_the_millisecond_and_round_trips(ms: int) -> None:
    # Given any epoch millisecond, When it is formatted
    text = iso(ms)
    # Then it reads as the same instant (computed without floats), sorts as it reads, and parses back
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", text)
    assert text == expected.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert parse_iso_ms(text) == ms
