"""parse_job_spec / parse_message_request: every error code of POST /jobs and POST /enqueue, and the defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from functions.logic.enqueue import JobSpec, parse_job_spec, parse_message_request
from functions.logic.job_types import registered_types
from functions.models.errors import ApiError, InvalidBody, InvalidMessage, InvalidOption, InvalidPayload, InvalidType
from tests.unit.fakes import EPOCH_MS, RegisterJobType

NOW = EPOCH_MS
NOW_DT = datetime.fromtimestamp(NOW / 1000, tz=UTC)
YEAR_SECONDS = 31_536_000


def _body(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "payload": {"message": "hi"}, **fields}


def _rejects(body: Any, error: type[ApiError]) -> ApiError:
    with pytest.raises(error) as caught:
        parse_job_spec(body, NOW)
    assert caught.value.status_code == 400
    return caught.value


# --- INVALID_BODY ---


@pytest.mark.parametrize("body", [None, [], [{"type": "message"}], "message", 42, True])
def test_a_body_that_is_not_an_object_is_invalid_body(body: Any) -> None:
    error = _rejects(body, InvalidBody)
    assert error.code == "INVALID_BODY"


# --- INVALID_TYPE ---


@pytest.mark.parametrize("body", [{}, {"type": "nope"}, {"type": 5}, {"type": None}, {"type": ["message"]}])
def test_missing_unknown_or_non_string_type_is_invalid_type_listing_valid_types(body: dict[str, Any]) -> None:
    # When the type is not a registered name
    error = _rejects(body, InvalidType)
    # Then the code is INVALID_TYPE and the message lists every valid type
    assert error.code == "INVALID_TYPE"
    for name in registered_types():
        assert name in error.message


# --- INVALID_PAYLOAD ---


@pytest.mark.parametrize("payload", ["text", [1, 2], 3, True])
def test_a_payload_that_is_not_an_object_is_invalid_payload(payload: Any) -> None:
    error = _rejects(_body(payload=payload), InvalidPayload)
    assert error.code == "INVALID_PAYLOAD"


def test_a_payload_failing_the_type_model_is_invalid_payload_with_details() -> None:
    # Given a simulate job whose payload breaks three rules
    body = {"type": "simulate", "payload": {"target": "", "durationMs": 70_000, "extra": 1}}
    # When it is parsed
    error = _rejects(body, InvalidPayload)
    # Then every broken field is in the details, each with a message
    fields = {detail["field"] for detail in error.details}
    assert {"target", "durationMs", "extra"} <= fields
    assert error.to_body()["details"] == error.details
    assert error.to_body()["code"] == "INVALID_PAYLOAD"


def test_a_missing_payload_is_validated_as_an_empty_object() -> None:
    # Given simulate, whose model requires a target, and no payload at all
    error = _rejects({"type": "simulate"}, InvalidPayload)
    # Then the missing target is reported
    assert "target" in {detail["field"] for detail in error.details}


# --- INVALID_OPTION ---


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("priority", 0),
        ("priority", 11),
        ("priority", "5"),
        ("priority", True),
        ("priority", 5.5),
        ("priority", None),
        ("priority", float("nan")),
        ("priority", float("inf")),
        ("maxAttempts", 0),
        ("maxAttempts", 26),
        ("maxAttempts", False),
        ("timeoutSeconds", 0),
        ("timeoutSeconds", 901),
        ("timeoutSeconds", "5"),
        ("timeoutSeconds", 5.5),
        ("timeoutSeconds", True),
        ("delaySeconds", -1),
        ("delaySeconds", YEAR_SECONDS + 1),
        ("delaySeconds", "60"),
        ("delaySeconds", 1.5),
    ],
)
def test_out_of_range_or_non_integer_options_are_invalid_option(name: str, value: Any) -> None:
    error = _rejects(_body(**{name: value}), InvalidOption)
    assert error.code == "INVALID_OPTION"
    assert name in error.message


@pytest.mark.parametrize(
    "run_at",
    [
        "2026-01-01T00:10:00",  # no offset
        "not a date",
        "",
        "2026-13-01T00:00:00Z",
        12345,
        None,
        (NOW_DT + timedelta(seconds=YEAR_SECONDS + 1)).isoformat(),
    ],
)
def test_bad_run_at_is_invalid_option(run_at: Any) -> None:
    error = _rejects(_body(runAt=run_at), InvalidOption)
    assert "runAt" in error.message


def test_delay_seconds_and_run_at_together_are_invalid_option() -> None:
    error = _rejects(_body(delaySeconds=10, runAt=(NOW_DT + timedelta(minutes=5)).isoformat()), InvalidOption)
    assert "delaySeconds" in error.message and "runAt" in error.message


def test_an_unknown_top_level_field_is_invalid_option_naming_it() -> None:
    error = _rejects(_body(prio=5), InvalidOption)
    assert "prio" in error.message
    assert "priority" in error.details["allowed"]


def test_a_huge_integer_option_is_invalid_option_not_a_crash() -> None:
    # Given a priority written as a 400-digit integer (valid JSON, json.loads makes it an int)
    # When it is parsed
    # Then it is rejected as INVALID_OPTION like any other out-of-range integer
    _rejects(_body(priority=10**400), InvalidOption)


# --- defaults and accepted values ---


def test_defaults_are_priority_5_max_attempts_3_empty_payload_and_run_now() -> None:
    spec = parse_job_spec({"type": "message", "payload": {"message": "hi"}}, NOW)
    assert spec == JobSpec(type="message", payload={"message": "hi"}, priority=5, max_attempts=3, run_at_ms=None)


@pytest.mark.parametrize("body", [{"type": "noop"}, {"type": "noop", "payload": None}])
def test_payload_defaults_to_an_empty_object(register_job_type: RegisterJobType, body: dict[str, Any]) -> None:
    # Given a type whose payload model has no required field
    register_job_type("noop", lambda payload, ctx: None)
    # When the payload is missing or null
    spec = parse_job_spec(body, NOW)
    # Then the job gets {}
    assert spec.payload == {}


def test_payload_is_normalised_by_the_model_with_defaults_by_alias() -> None:
    spec = parse_job_spec({"type": "simulate", "payload": {"target": "a.png"}}, NOW)
    assert spec.payload == {
        "action": "resize",
        "target": "a.png",
        "durationMs": 50,
        "failureRate": 0.35,
        "shouldFail": False,
        "steps": 0,
    }


@pytest.mark.parametrize(
    ("name", "value"), [("priority", 1), ("priority", 10), ("maxAttempts", 1), ("maxAttempts", 25)]
)
def test_range_boundaries_are_accepted(name: str, value: int) -> None:
    spec = parse_job_spec(_body(**{name: value}), NOW)
    assert getattr(spec, "priority" if name == "priority" else "max_attempts") == value


@pytest.mark.parametrize("value", [1, 900])
def test_timeout_seconds_boundaries_are_accepted(value: int) -> None:
    assert parse_job_spec(_body(timeoutSeconds=value), NOW).timeout_seconds == value


def test_without_timeout_seconds_a_spec_has_none() -> None:
    assert parse_job_spec(_body(), NOW).timeout_seconds is None


@pytest.mark.parametrize("value", ["50", True, 50.5])
def test_a_payload_integer_must_be_a_json_integer_too(value: Any) -> None:
    # Given simulate's durationMs (an integer) as a string, a float or a boolean
    error = _rejects({"type": "simulate", "payload": {"target": "a", "durationMs": value}}, InvalidPayload)
    # Then the payload is refused at that field, as priority: "5" is refused as an option
    assert {detail["field"] for detail in error.details} == {"durationMs"}


def test_a_payload_float_field_takes_a_json_integer() -> None:
    # Given simulate's failureRate (a number) as the integer 0: an integer is a number
    spec = parse_job_spec({"type": "simulate", "payload": {"target": "a", "failureRate": 0}}, NOW)
    assert spec.payload["failureRate"] == 0


def test_delay_seconds_sets_run_at_that_far_ahead() -> None:
    assert parse_job_spec(_body(delaySeconds=60), NOW).run_at_ms == NOW + 60_000
    assert parse_job_spec(_body(delaySeconds=YEAR_SECONDS), NOW).run_at_ms == NOW + YEAR_SECONDS * 1000


def test_delay_seconds_zero_means_now() -> None:
    assert parse_job_spec(_body(delaySeconds=0), NOW).run_at_ms is None


def test_run_at_with_an_offset_is_converted_to_epoch_ms() -> None:
    # Given a time 10 minutes ahead written in UTC+02:00
    run_at = (NOW_DT + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=2)))
    # Then the spec runs at that instant
    assert parse_job_spec(_body(runAt=run_at.isoformat()), NOW).run_at_ms == NOW + 600_000


def test_run_at_with_z_suffix_is_accepted() -> None:
    assert parse_job_spec(_body(runAt="2026-01-01T01:00:00Z"), NOW).run_at_ms == NOW + 3_600_000


def test_run_at_exactly_one_year_ahead_is_accepted() -> None:
    run_at = (NOW_DT + timedelta(seconds=YEAR_SECONDS)).isoformat()
    assert parse_job_spec(_body(runAt=run_at), NOW).run_at_ms == NOW + YEAR_SECONDS * 1000


@pytest.mark.parametrize("run_at", ["2025-12-31T23:59:59Z", "2000-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z"])
def test_run_at_in_the_past_or_now_means_now(run_at: str) -> None:
    assert parse_job_spec(_body(runAt=run_at), NOW).run_at_ms is None


# --- POST /enqueue ---


def test_message_request_becomes_a_trimmed_message_job() -> None:
    spec = parse_message_request({"message": "  hello  "})
    assert spec == JobSpec(type="message", payload={"message": "hello"})


@pytest.mark.parametrize("message", ["a", "x" * 500, "  " + "x" * 500 + "  "])
def test_message_of_1_to_500_characters_after_trimming_is_accepted(message: str) -> None:
    assert parse_message_request({"message": message}).payload["message"] == message.strip()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": ""},
        {"message": "   \n\t"},
        {"message": "x" * 501},
        {"message": 5},
        {"message": None},
        {"message": ["a"]},
    ],
)
def test_bad_message_is_invalid_message(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message_request(body)
    assert caught.value.code == "INVALID_MESSAGE"


@pytest.mark.parametrize("body", [None, [], "hello", 1])
def test_message_request_that_is_not_an_object_is_invalid_body(body: Any) -> None:
    with pytest.raises(InvalidBody):
        parse_message_request(body)
