"""Reading a request's JSON body: the one parser of the API's bodies (``POST /jobs``... and webhooks).

Not JSON (or NaN/Infinity, which JSON does not have) is ``INVALID_BODY``. A number with no fractional part is an
integer (``5.0`` is 5, as in JSON Schema); the request and payload models are strict, so ``"5"`` and ``true`` are
never numbers. An integer longer than Python converts
(``sys.get_int_max_str_digits()``, 4,300 digits) is valid JSON but out of every range the API accepts: the error
names its field, as for any out-of-range number (``INVALID_PAYLOAD`` in a payload, else ``INVALID_OPTION``).
"""

from __future__ import annotations

import json
from typing import Any

from functions.models.errors import InvalidBody, InvalidOption, InvalidPayload


class _TooManyDigits:
    """Stands for an integer too long to convert, until its field is known."""


def loads(data: bytes | str, *, payload_at_root: bool = False, not_json: str = "the body is not valid JSON") -> Any:
    """The body's JSON value; ``payload_at_root``: the whole body is a job's payload (webhooks)."""
    try:
        body = json.loads(data, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidBody(not_json) from exc
    _refuse_huge_numbers(body, "", payload_at_root)
    return body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> Any:
    """A number without a fractional part is an integer, however it is written (``5.0``, ``5e0``), as JSON Schema's
    ``integer`` says: the strict models then take it for an integer field, and never a string or a boolean."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _parse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:  # the text is a JSON integer literal: only the digit limit refuses it
        return _TooManyDigits()


def _refuse_huge_numbers(value: Any, path: str, payload_at_root: bool) -> None:
    if isinstance(value, _TooManyDigits):
        where = path or "body"
        message = f"'{where}' is out of range: the number has too many digits"
        if payload_at_root or path == "payload" or ".payload" in f".{path}":
            field = path.split("payload.", 1)[-1] if not payload_at_root else where
            raise InvalidPayload(message, details=[{"field": field, "message": "the number is out of range"}])
        raise InvalidOption(message)
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_huge_numbers(item, f"{path}.{key}" if path else str(key), payload_at_root)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_huge_numbers(item, f"{path}[{index}]", payload_at_root)
