"""The document's "not blank" patterns name exactly the characters ``str.strip()`` removes."""

from __future__ import annotations

import re

from functions.models.bounds import NOT_BLANK_PATTERN, WHITESPACE_CLASS


def test_the_whitespace_class_is_what_str_strip_removes() -> None:
    # Given every code point, When each is matched against the class, Then it matches exactly the str.isspace() ones
    space = re.compile(f"[{WHITESPACE_CLASS}]")
    assert [hex(c) for c in range(0x110000) if chr(c).isspace() != bool(space.fullmatch(chr(c)))] == []


def test_not_blank_needs_a_character_that_strip_keeps() -> None:
    assert not re.search(NOT_BLANK_PATTERN, " \t\x1e\x85\u3000")
    assert re.search(NOT_BLANK_PATTERN, " a ")
