"""Secrets never reach the logs: sensitive keys and registered secret values are masked in every log line."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from aws_lambda_powertools import Logger

from functions.redaction import MASK, RedactingFormatter, forget_secrets, redact, register_secret

SECRET = "whsec-0123456789abcdef"
API_KEY = "key-AbCdEfGhIjKlMnOp"


@pytest.fixture
def captured() -> Iterator[tuple[Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = Logger(
        # A new name each time: Powertools configures a logger name only once.
        service=f"redaction-{uuid.uuid4().hex}",
        logger_formatter=RedactingFormatter(),
        logger_handler=logging.StreamHandler(stream),
    )
    yield logger, stream
    forget_secrets()


def test_sensitive_keys_are_masked_at_any_depth(captured: tuple[Logger, io.StringIO]) -> None:
    logger, stream = captured

    # When a log call passes headers and settings that hold secrets under telling names
    logger.warning(
        "request",
        extra={
            "headers": {"X-API-Key": API_KEY, "Authorization": "Bearer abc", "content-type": "application/json"},
            "webhook": {"signing_secret": SECRET, "url": "https://example.com/hook"},
            "X-Jobs-Signature": "t=1,v1=deadbeef",
        },
    )

    # Then those values are masked and the rest is kept
    line = json.loads(stream.getvalue())
    assert line["headers"] == {"X-API-Key": MASK, "Authorization": MASK, "content-type": "application/json"}
    assert line["webhook"] == {"signing_secret": MASK, "url": "https://example.com/hook"}
    assert line["X-Jobs-Signature"] == MASK


def test_registered_secrets_are_masked_inside_any_text(captured: tuple[Logger, io.StringIO]) -> None:
    logger, stream = captured
    register_secret(SECRET)
    register_secret(API_KEY)

    # When a secret shows up in a message, an unrelated field, and an exception's text
    logger.warning(f"retrying with {SECRET}", extra={"note": f"key was {API_KEY}!"})
    try:
        raise RuntimeError(f"remote said: bad secret {SECRET}")
    except RuntimeError:
        logger.exception("failed")

    # Then no line holds either value
    output = stream.getvalue()
    assert SECRET not in output and API_KEY not in output
    lines = [json.loads(text) for text in output.splitlines()]
    assert lines[0]["message"] == f"retrying with {MASK}" and lines[0]["note"] == f"key was {MASK}!"
    assert MASK in lines[1]["exception"] and lines[1]["stack_trace"]["value"] == f"remote said: bad secret {MASK}"


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    try:
        assert redact("abc def") == "abc def"
    finally:
        forget_secrets()


def test_the_service_logger_redacts() -> None:
    # The functions' own logger is built with the redacting formatter
    from functions.handlers.runtime import logger

    assert any(isinstance(handler.formatter, RedactingFormatter) for handler in logger.handlers)
