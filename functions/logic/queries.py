"""Query-string values: the one check for a bounded integer parameter (limits, minutes, counts)."""

from __future__ import annotations

from functions.models.errors import InvalidQuery


def int_query(query: dict[str, str], name: str, default: int, low: int, high: int, unit: str = "") -> int:
    """``query[name]`` (``default`` when absent) as an integer from ``low`` to ``high``, or ``InvalidQuery`` (whose
    message names the ``unit``, when given)."""
    raw = query.get(name, str(default))
    # isascii(): "²".isdigit() is true, but int("²") fails
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidQuery(f"'{name}' must be an integer from {low} to {high}" + (f" ({unit})" if unit else ""))
    return int(raw)
