"""The built-in job types: ``simulate`` (deterministic per-attempt failures) and ``message``."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest

from functions.logic.job_types import JobContext, get_job_type, registered_types
from functions.logic.job_types.builtin import MessagePayload, SimulatePayload, attempt_roll, simulate
from functions.models.errors import InvalidPayload, InvalidType, RetryableJobError

JOB_ID = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def _context(attempt: int = 1, job_id: str = JOB_ID) -> JobContext:
    return JobContext(job_id=job_id, tenant="t", attempt=attempt, max_attempts=3, logger=logging.getLogger("test"))


def _payload(**fields: Any) -> SimulatePayload:
    return SimulatePayload.model_validate({"target": "cat.png", "durationMs": 0, "failureRate": 0.0, **fields})


# --- registry ---


def test_builtin_types_are_registered_by_name() -> None:
    # Given the job_types package imported
    # Then both foundation types are registered, with their payload models
    assert {"simulate", "message"} <= set(registered_types())
    assert get_job_type("simulate").payload_model is SimulatePayload
    assert get_job_type("message").payload_model is MessagePayload


@pytest.mark.parametrize("name", ["nope", None, 3, ""])
def test_unknown_type_raises_invalid_type_listing_the_valid_types(name: object) -> None:
    # When an unregistered name is looked up
    with pytest.raises(InvalidType) as caught:
        get_job_type(name)
    # Then the message names every valid type
    for valid in registered_types():
        assert valid in caught.value.message


# --- attempt_roll ---


@pytest.mark.parametrize("attempt", [1, 2, 3, 25])
def test_attempt_roll_matches_the_contract_formula(attempt: int) -> None:
    # Given the formula of the issue
    digest = hashlib.sha256(f"{JOB_ID}:{attempt}".encode()).digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64
    # Then attempt_roll is exactly that, a number in [0, 1)
    assert attempt_roll(JOB_ID, attempt) == expected
    assert 0 <= attempt_roll(JOB_ID, attempt) < 1


def test_attempt_roll_differs_per_attempt_and_per_job() -> None:
    # When the roll is taken for ten attempts of one job, and for another job
    rolls = [attempt_roll(JOB_ID, attempt) for attempt in range(1, 11)]
    # Then retries do not repeat the first outcome's number, and jobs differ
    assert len(set(rolls)) == 10
    assert attempt_roll(JOB_ID, 1) != attempt_roll("another-job", 1)
    # And the same job and attempt always roll the same (reproducible)
    assert attempt_roll(JOB_ID, 1) == attempt_roll(JOB_ID, 1)


# --- simulate ---


def test_simulate_resize_returns_the_resized_message() -> None:
    # Given a resize that cannot fail
    # When it runs
    result = simulate(_payload(action="resize", target="photo.jpg"), _context())
    # Then the result is the seed's exact string
    assert result == "Resized photo.jpg to 800x600 (simulated)"


def test_simulate_fetch_returns_the_fetched_message() -> None:
    result = simulate(_payload(action="fetch", target="https://example.com/a"), _context())
    assert result == "Fetched https://example.com/a (simulated)"


def test_simulate_action_defaults_to_resize() -> None:
    assert simulate(_payload(), _context()) == "Resized cat.png to 800x600 (simulated)"


def test_simulate_should_fail_raises_retryable_even_with_zero_failure_rate() -> None:
    with pytest.raises(RetryableJobError, match="shouldFail"):
        simulate(_payload(shouldFail=True, failureRate=0.0), _context())


def test_simulate_fails_when_the_roll_is_below_the_failure_rate() -> None:
    # Given a failure rate just above this attempt's roll
    roll = attempt_roll(JOB_ID, 2)
    rate = min(1.0, roll + 1e-9)
    # When attempt 2 runs
    # Then it fails, retryably, naming the attempt
    with pytest.raises(RetryableJobError, match="attempt 2"):
        simulate(_payload(failureRate=rate), _context(attempt=2))


def test_simulate_succeeds_when_the_roll_equals_the_failure_rate() -> None:
    # Given a failure rate exactly at this attempt's roll (the rule is roll < rate)
    rate = attempt_roll(JOB_ID, 1)
    # When attempt 1 runs
    result = simulate(_payload(failureRate=rate), _context(attempt=1))
    # Then it succeeds
    assert result.startswith("Resized")


def test_simulate_outcome_is_independent_per_attempt() -> None:
    # Given a failure rate between the rolls of two attempts of the same job
    rolls = {attempt: attempt_roll(JOB_ID, attempt) for attempt in range(1, 11)}
    low_attempt = min(rolls, key=rolls.__getitem__)
    high_attempt = max(rolls, key=rolls.__getitem__)
    rate = (rolls[low_attempt] + rolls[high_attempt]) / 2
    # Then the low-roll attempt fails and the high-roll attempt succeeds
    with pytest.raises(RetryableJobError):
        simulate(_payload(failureRate=rate), _context(attempt=low_attempt))
    assert simulate(_payload(failureRate=rate), _context(attempt=high_attempt)).startswith("Resized")


def test_simulate_failure_rate_one_always_fails() -> None:
    for attempt in range(1, 6):
        with pytest.raises(RetryableJobError):
            simulate(_payload(failureRate=1), _context(attempt=attempt))


# --- SimulatePayload validation ---


def test_simulate_payload_defaults() -> None:
    payload = SimulatePayload.model_validate({"target": "x"})
    assert (payload.action, payload.duration_ms, payload.failure_rate, payload.should_fail) == (
        "resize",
        50,
        0.35,
        False,
    )


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({}, "target"),
        ({"target": ""}, "target"),
        ({"target": "   "}, "target"),
        ({"target": "x" * 501}, "target"),
        ({"target": "x", "durationMs": -1}, "durationMs"),
        ({"target": "x", "durationMs": 60_001}, "durationMs"),
        ({"target": "x", "failureRate": -0.01}, "failureRate"),
        ({"target": "x", "failureRate": 1.01}, "failureRate"),
        ({"target": "x", "action": "delete"}, "action"),
        ({"target": "x", "shouldFail": "maybe"}, "shouldFail"),
        ({"target": "x", "colour": "red"}, "colour"),
    ],
)
def test_simulate_payload_rejects_bad_fields_with_details(fields: dict[str, Any], bad_field: str) -> None:
    # When the payload is parsed through the registry (as the API and the consumer do)
    with pytest.raises(InvalidPayload) as caught:
        get_job_type("simulate").parse_payload(fields)
    # Then the error is INVALID_PAYLOAD with a detail naming the field
    assert caught.value.code == "INVALID_PAYLOAD"
    assert bad_field in [detail["field"] for detail in caught.value.details]
    assert all(detail["message"] for detail in caught.value.details)


@pytest.mark.parametrize(
    "fields",
    [
        {"target": "x" * 500},
        {"target": "x", "durationMs": 0},
        {"target": "x", "durationMs": 60_000},
        {"target": "x", "failureRate": 0},
        {"target": "x", "failureRate": 1},
        {"target": "x", "action": "fetch", "shouldFail": True},
    ],
)
def test_simulate_payload_accepts_the_boundaries(fields: dict[str, Any]) -> None:
    assert get_job_type("simulate").parse_payload(fields).target == fields["target"]


# --- message ---


def test_message_payload_trims_and_the_job_returns_the_message() -> None:
    # Given a message with surrounding whitespace
    payload = get_job_type("message").parse_payload({"message": "  hello world \n"})
    # When the message job runs
    result = get_job_type("message").handler(payload, _context())
    # Then the result is the trimmed message
    assert result == "hello world"


@pytest.mark.parametrize(
    "fields", [{}, {"message": "   "}, {"message": "x" * 501}, {"message": 5}, {"message": "a", "x": 1}]
)
def test_message_payload_rejects_empty_long_non_string_and_unknown_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        get_job_type("message").parse_payload(fields)
