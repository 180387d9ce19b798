"""Secrets never reach the logs: the service's log formatter masks them, whatever a log call passes.

Two rules, applied to every structured log record before it is serialised:

- a value under a sensitive key (``x-api-key``, ``authorization``, ``secret``, ``signature``, ``password``,
  ``token``, ``apiKey``... at any depth, case-insensitive) is replaced by ``***``;
- any registered secret value (webhook signing and ingest secrets as they are read, the caller's API key as a
  request arrives) is masked wherever it appears inside a string, exception texts and stack traces included.

Secrets are registered as they are seen, per container; short values (< 8 characters) are not registered, so that
masking never eats ordinary words.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

MASK = "***"
MIN_SECRET_LENGTH = 8
_SENSITIVE_KEY = re.compile(r"(api[-_]?key|authorization|secret|signature|password|passwd|token|cookie)", re.I)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later log line of this container."""
    global _pattern
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def forget_secrets() -> None:
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(value: Any, key: str = "") -> Any:
    """``value`` with sensitive keys and registered secrets masked (a new object; the input is not changed)."""
    if key and _SENSITIVE_KEY.search(key) and value not in (None, "", MASK):
        return MASK
    if isinstance(value, str):
        pattern = _pattern
        return pattern.sub(MASK, value) if pattern is not None else value
    if isinstance(value, dict):
        return {name: redact(item, str(name)) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, BaseException):  # Powertools' stack_trace carries the exception object itself
        return redact(str(value))
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, masking secrets in every record (see the module docstring)."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(log=redact(log))
