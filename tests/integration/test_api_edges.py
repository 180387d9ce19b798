"""Validation at the edges, one rule everywhere: strict numbers, strict query strings, ids cut in messages."""

from __future__ import annotations

import pytest

from tests.integration.harness import Service, ok_job
from tests.integration.test_api_errors import assert_error

HUGE = "9" * 5000  # more digits than Python converts to an int (4,300)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs?limit=1&limit=2",
        "/jobs?status=pending&status=failed",
        "/stats/throughput?minutes=5&minutes=6",
        "/jobs/00000000-0000-0000-0000-000000000000?wait=0&wait=1",
    ],
)
def test_a_repeated_query_parameter_is_invalid_query(service: Service, path: str) -> None:
    # When a parameter is given twice Then it is refused, not silently resolved to one of its values
    body = assert_error(service.api("GET", path), 400, "INVALID_QUERY")
    assert "once" in body["error"]


@pytest.mark.parametrize("query", ["status=", "type=", "limit=", "cursor="])
def test_an_empty_query_parameter_is_invalid_query(service: Service, query: str) -> None:
    assert_error(service.api("GET", f"/jobs?{query}"), 400, "INVALID_QUERY")


def test_an_unknown_type_filter_is_invalid_query_like_an_unknown_status(service: Service) -> None:
    # Given a type that is not registered
    body = assert_error(service.api("GET", "/jobs", query={"type": "bogus"}), 400, "INVALID_QUERY")
    # Then the message lists the types, as for statuses
    assert "simulate" in body["error"]
    assert_error(service.api("GET", "/jobs", query={"status": "bogus"}), 400, "INVALID_QUERY")


@pytest.mark.parametrize("value", ["lõ", "yes", "0"])
def test_a_result_redirect_other_than_1_or_true_is_invalid_query(service: Service, value: str) -> None:
    job = service.create_job(ok_job())
    assert_error(service.api("GET", f"/jobs/{job['id']}/result", query={"redirect": value}), 400, "INVALID_QUERY")


def test_a_hook_priority_given_twice_is_invalid_query(service: Service) -> None:
    response = service.api("POST", "/hooks/message?priority=1&priority=2", body={"message": "hi"})
    assert_error(response, 400, "INVALID_QUERY")


@pytest.mark.parametrize("name", ["maxAttempts", "priority", "delaySeconds"])
def test_an_option_with_thousands_of_digits_is_an_out_of_range_option(service: Service, name: str) -> None:
    # Given an option written with 5,000 digits (valid JSON, beyond Python's int string limit)
    raw = '{"type": "message", "payload": {"message": "hi"}, "' + name + '": ' + HUGE + "}"
    # When it is posted Then the answer names the field as out of range, not "not valid JSON"
    body = assert_error(service.api("POST", "/jobs", raw=raw), 400, "INVALID_OPTION")
    assert name in body["error"] and "out of range" in body["error"]


def test_a_payload_number_with_thousands_of_digits_is_invalid_payload(service: Service) -> None:
    raw = '{"type": "simulate", "payload": {"target": "a", "durationMs": -' + HUGE + "}}"
    body = assert_error(service.api("POST", "/jobs", raw=raw), 400, "INVALID_PAYLOAD")
    assert body["details"] == [{"field": "durationMs", "message": "the number is out of range"}]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "message", "payload": {"message": "hi"}, "priority": "5"}, "INVALID_OPTION"),
        ({"type": "message", "payload": {"message": "hi"}, "priority": 5.5}, "INVALID_OPTION"),
        ({"type": "message", "payload": {"message": "hi"}, "priority": True}, "INVALID_OPTION"),
        ({"type": "simulate", "payload": {"target": "a", "durationMs": "50"}}, "INVALID_PAYLOAD"),
        ({"type": "simulate", "payload": {"target": "a", "durationMs": 50.5}}, "INVALID_PAYLOAD"),
        ({"type": "simulate", "payload": {"target": "a", "durationMs": True}}, "INVALID_PAYLOAD"),
        ({"contentType": "image/png", "size": "5"}, "INVALID_UPLOAD"),
    ],
    ids=[
        "priority-string",
        "priority-fraction",
        "priority-bool",
        "payload-string",
        "payload-fraction",
        "payload-bool",
        "upload-size-string",
    ],
)
def test_numbers_are_strict_in_options_and_payloads_alike(service: Service, body: dict[str, object], code: str) -> None:
    # An integer is a JSON number without a fraction, wherever it is: never a string or a boolean
    path = "/uploads" if "size" in body else "/jobs"
    assert_error(service.api("POST", path, body=body), 400, code)


def test_an_integral_number_is_an_integer_in_options_payloads_and_uploads_alike(service: Service) -> None:
    # Given integers written as 5.0 (JSON Schema's integer: a number without a fractional part)
    job = {"type": "simulate", "payload": {"target": "a", "durationMs": 50.0, "failureRate": 0}, "priority": 7.0}
    created = service.api("POST", "/jobs", body=job)
    # Then they are accepted as the integers they are, in options and payloads alike
    assert created.status == 202, created.body
    assert (created.body["priority"], created.body["payload"]["durationMs"]) == (7, 50)
    upload = service.api("POST", "/uploads", body={"contentType": "image/png", "size": 100.0})
    assert upload.status == 201, upload.body


def test_delay_seconds_and_run_at_together_are_invalid_option(service: Service) -> None:
    body = {"type": "message", "payload": {"message": "hi"}, "delaySeconds": 5, "runAt": "2030-01-01T00:00:00Z"}
    assert_error(service.api("POST", "/jobs", body=body), 400, "INVALID_OPTION")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/{id}"),
        ("DELETE", "/jobs/{id}"),
        ("POST", "/jobs/{id}/retry"),
        ("GET", "/jobs/{id}/result"),
        ("GET", "/batches/{id}"),
    ],
)
def test_not_found_does_not_echo_a_long_id_whole(service: Service, method: str, path: str) -> None:
    # Given an id of 5,000 characters
    long_id = "a" * 5000
    # When it is asked for Then NOT_FOUND quotes it cut short
    body = assert_error(service.api(method, path.format(id=long_id)), 404, "NOT_FOUND")
    assert len(body["error"]) < 120
    assert "…" in body["error"]


def test_an_upload_over_the_limit_is_invalid_upload(service: Service) -> None:
    body = {"contentType": "image/png", "size": 10 * 1024 * 1024 + 1}
    assert_error(service.api("POST", "/uploads", body=body), 400, "INVALID_UPLOAD")
