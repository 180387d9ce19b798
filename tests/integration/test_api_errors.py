"""The API handler on bad input, bad keys, other tenants' jobs and storage outages: the right code, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.dal.clients import client
from functions.dal.keys import DynamoKeyStore, StoredKey
from functions.handlers import authorizer
from functions.logic.keys import hash_key
from functions.models.bounds import BODY_MAX_BYTES_DEFAULT as MAX_BODY_BYTES
from functions.models.errors import StorageError
from functions.models.job import JobStatus
from local.gateway import authorizer_event
from tests.integration.harness import TENANT_A, TENANT_B, Service, failing_job, ok_job

PROTECTED_ROUTES = [
    ("POST", "/jobs", ok_job()),
    ("GET", "/jobs", None),
    ("GET", "/jobs/{id}", None),
    ("DELETE", "/jobs/{id}", None),
    ("POST", "/jobs/{id}/retry", None),
    ("GET", "/stats", None),
    ("POST", "/enqueue", {"message": "hello"}),
    ("POST", "/jobs/batch", {"jobs": [ok_job()]}),
    ("GET", "/batches/{id}", None),
    ("POST", "/hooks/simulate", {"target": "hook.png"}),
]


def assert_error(response: tuple[int, Any, dict[str, str]], status: int, code: str) -> dict[str, Any]:
    got_status, body, headers = response
    assert (got_status, body.get("code") if isinstance(body, dict) else body) == (status, code), body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert set(body) <= {"error", "code", "details"}
    assert "Traceback" not in json.dumps(body)
    assert headers["Content-Type"] == "application/json"
    return dict(body)


@pytest.fixture
def job_id(service: Service) -> str:
    """A cancelled job of tenant A: every route that takes an id has something to act on."""
    job = service.create_job(ok_job())
    assert service.api("DELETE", f"/jobs/{job['id']}").status == 200
    return str(job["id"])


# --- bodies ---

NOT_OBJECTS = [
    pytest.param("not json", id="not-json"),
    pytest.param("null", id="null"),
    pytest.param("[]", id="empty-array"),
    pytest.param('[{"type": "simulate"}]', id="array"),
    pytest.param('"a string"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("true", id="bool"),
    pytest.param("", id="empty"),
    pytest.param("   \n", id="whitespace"),
    pytest.param("{", id="truncated"),
    pytest.param('{"type": "simulate", "priority": NaN}', id="nan"),
    pytest.param('{"type": "simulate", "priority": Infinity}', id="infinity"),
    pytest.param("[" * 5000 + "]" * 5000, id="deeply-nested"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
]


@pytest.mark.parametrize("path", ["/jobs", "/enqueue"])
def test_a_body_that_is_not_a_json_object_is_invalid_body(
    service: Service, subtests: pytest.Subtests, path: str
) -> None:
    for case in NOT_OBJECTS:
        (raw,) = case.values
        with subtests.test(case.id):
            # When the body is not a JSON object
            response = service.api("POST", path, raw=raw)

            # Then it is refused as INVALID_BODY
            assert_error(response, 400, "INVALID_BODY")

    # And nothing was accepted
    assert service.queue_is_empty()
    assert service.stats()["enqueued"] == 0


@pytest.mark.parametrize("path", ["/jobs", "/enqueue"])
def test_a_body_over_256_kib_is_payload_too_large_and_256_kib_is_not(service: Service, path: str) -> None:
    # Given bodies of exactly the limit and one byte more (their content invalid either way)
    def body_of(size: int) -> str:
        skeleton = json.dumps({"type": "simulate", "payload": {"target": ""}, "message": ""})
        return skeleton.replace('"target": ""', '"target": "' + "x" * (size - len(skeleton)) + '"')

    at_limit, over = body_of(MAX_BODY_BYTES), body_of(MAX_BODY_BYTES + 1)
    assert (len(at_limit), len(over)) == (MAX_BODY_BYTES, MAX_BODY_BYTES + 1)

    # Then one byte over is 413, and the limit itself is read and judged on its content
    assert_error(service.api("POST", path, raw=over), 413, "PAYLOAD_TOO_LARGE")
    status, body, _ = service.api("POST", path, raw=at_limit)
    assert status == 400, body
    assert body["code"] in {"INVALID_PAYLOAD", "INVALID_OPTION", "INVALID_MESSAGE"}


UNKNOWN_TYPES = [
    pytest.param({"type": "nope", "payload": {}}, id="unknown"),
    pytest.param({"payload": {"target": "x"}}, id="missing"),
    pytest.param({"type": None}, id="null"),
    pytest.param({"type": 5}, id="number"),
    pytest.param({"type": ["simulate"]}, id="list"),
    pytest.param({"type": "Simulate"}, id="wrong-case"),
    pytest.param({}, id="empty-object"),
]


def test_an_unknown_or_missing_type_is_invalid_type_listing_the_types(
    service: Service, subtests: pytest.Subtests
) -> None:
    for case in UNKNOWN_TYPES:
        (body,) = case.values
        with subtests.test(case.id):
            error = assert_error(service.api("POST", "/jobs", body), 400, "INVALID_TYPE")

            assert "simulate" in error["error"]
            assert "message" in error["error"]


BAD_PAYLOADS = [
    pytest.param("simulate", {}, "target", id="missing-target"),
    pytest.param("simulate", {"target": ""}, "target", id="empty-target"),
    pytest.param("simulate", {"target": "   "}, "target", id="blank-target"),
    pytest.param("simulate", {"target": "x" * 501}, "target", id="long-target"),
    pytest.param("simulate", {"target": 5}, "target", id="numeric-target"),
    pytest.param("simulate", {"target": "x", "action": "explode"}, "action", id="bad-action"),
    pytest.param("simulate", {"target": "x", "durationMs": 60_001}, "durationMs", id="long-duration"),
    pytest.param("simulate", {"target": "x", "durationMs": -1}, "durationMs", id="negative-duration"),
    pytest.param("simulate", {"target": "x", "durationMs": 1.5}, "durationMs", id="fractional-duration"),
    pytest.param("simulate", {"target": "x", "failureRate": 1.01}, "failureRate", id="failure-rate-high"),
    pytest.param("simulate", {"target": "x", "failureRate": -0.1}, "failureRate", id="failure-rate-low"),
    pytest.param("simulate", {"target": "x", "shouldFail": [True]}, "shouldFail", id="should-fail-list"),
    pytest.param("simulate", {"target": "x", "colour": "red"}, "colour", id="unknown-field"),
    pytest.param("message", {}, "message", id="missing-message"),
    pytest.param("message", {"message": "  "}, "message", id="blank-message"),
    pytest.param("message", {"message": "x" * 501}, "message", id="long-message"),
]


def test_a_payload_the_type_refuses_is_invalid_payload_with_details(
    service: Service, subtests: pytest.Subtests
) -> None:
    for case in BAD_PAYLOADS:
        job_type, payload, field = case.values
        with subtests.test(case.id):
            body = {"type": job_type, "payload": payload}
            error = assert_error(service.api("POST", "/jobs", body), 400, "INVALID_PAYLOAD")

            assert isinstance(error["details"], list)
            assert field in [detail["field"] for detail in error["details"]], error["details"]
            assert all(set(detail) == {"field", "message"} for detail in error["details"])
    assert service.queue_is_empty()


def test_a_payload_that_is_not_an_object_is_invalid_payload(service: Service, subtests: pytest.Subtests) -> None:
    for payload in ([], ["target"], "target", 5, True):
        with subtests.test(payload=payload):
            body = {"type": "simulate", "payload": payload}
            assert_error(service.api("POST", "/jobs", body), 400, "INVALID_PAYLOAD")


def _in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


BAD_OPTIONS = [
    pytest.param({"priority": 0}, id="priority-0"),
    pytest.param({"priority": 11}, id="priority-11"),
    pytest.param({"priority": "5"}, id="priority-string"),
    pytest.param({"priority": 5.5}, id="priority-fraction"),
    pytest.param({"priority": True}, id="priority-bool"),
    pytest.param({"priority": None}, id="priority-null"),
    pytest.param({"priority": 10**30}, id="priority-huge"),
    pytest.param({"maxAttempts": 0}, id="max-attempts-0"),
    pytest.param({"maxAttempts": 26}, id="max-attempts-26"),
    pytest.param({"maxAttempts": [3]}, id="max-attempts-list"),
    pytest.param({"delaySeconds": -1}, id="delay-negative"),
    pytest.param({"delaySeconds": 31_536_001}, id="delay-over-a-year"),
    pytest.param({"delaySeconds": "10"}, id="delay-string"),
    pytest.param({"delaySeconds": 1.5}, id="delay-fraction"),
    pytest.param({"delaySeconds": 10, "runAt": _in_days(1)}, id="delay-and-run-at"),
    pytest.param({"runAt": "2030-01-01T00:00:00"}, id="run-at-without-offset"),
    pytest.param({"runAt": _in_days(367)}, id="run-at-over-a-year"),
    pytest.param({"runAt": "tomorrow"}, id="run-at-garbage"),
    pytest.param({"runAt": ""}, id="run-at-empty"),
    pytest.param({"runAt": 1_900_000_000}, id="run-at-number"),
    pytest.param({"runAt": None}, id="run-at-null"),
    pytest.param({"colour": "red"}, id="unknown-option"),
]


def test_an_option_out_of_range_is_invalid_option(service: Service, subtests: pytest.Subtests) -> None:
    for case in BAD_OPTIONS:
        (options,) = case.values
        with subtests.test(case.id):
            assert_error(service.api("POST", "/jobs", ok_job(**options)), 400, "INVALID_OPTION")
    assert service.queue_is_empty()
    assert service.stats()["enqueued"] == 0


def test_an_overflowing_number_is_invalid_option(service: Service, subtests: pytest.Subtests) -> None:
    # JSON numbers such as 1e400 parse as infinity, which is no integer
    for name in ("priority", "maxAttempts", "delaySeconds"):
        for number in ("1e400", "-1e400"):
            with subtests.test(option=name, value=number):
                raw = '{"type":"simulate","payload":{"target":"x"},"' + name + '":' + number + "}"
                assert_error(service.api("POST", "/jobs", raw=raw), 400, "INVALID_OPTION")


BAD_MESSAGES = [
    pytest.param({"message": "   "}, id="blank"),
    pytest.param({"message": ""}, id="empty"),
    pytest.param({"message": "x" * 501}, id="too-long"),
    pytest.param({"message": 5}, id="number"),
    pytest.param({"message": None}, id="null"),
    pytest.param({"message": ["hi"]}, id="list"),
    pytest.param({}, id="missing"),
    pytest.param({"msg": "hi"}, id="misspelt"),
]


def test_enqueue_without_a_usable_message_is_invalid_message(service: Service, subtests: pytest.Subtests) -> None:
    for case in BAD_MESSAGES:
        (body,) = case.values
        with subtests.test(case.id):
            assert_error(service.api("POST", "/enqueue", body), 400, "INVALID_MESSAGE")
    assert service.queue_is_empty()


def test_a_message_accepted_by_enqueue_is_one_the_consumer_can_complete(service: Service) -> None:
    # Given a message that is valid JSON but not encodable text (a lone UTF-16 surrogate)
    status, body, _ = service.api("POST", "/enqueue", raw='{"message": "hello \\ud800"}')

    # Then it is refused up front, or accepted and completed - never accepted and then failed
    if status == 400:
        assert body["code"] == "INVALID_MESSAGE"
        return
    assert status == 202
    service.drain()
    assert service.job(body["id"])["status"] == "completed"


def test_post_jobs_refuses_text_that_is_not_encodable(service: Service) -> None:
    # The same input through POST /jobs is caught by the payload model
    raw = '{"type": "message", "payload": {"message": "hello \\ud800"}}'
    assert_error(service.api("POST", "/jobs", raw=raw), 400, "INVALID_PAYLOAD")


# --- queries ---


BAD_QUERIES = [
    pytest.param({"status": "bogus"}, id="status-bogus"),
    pytest.param({"status": "PENDING"}, id="status-upper-case"),
    pytest.param({"limit": "0"}, id="limit-0"),
    pytest.param({"limit": "101"}, id="limit-101"),
    pytest.param({"limit": "-1"}, id="limit-negative"),
    pytest.param({"limit": "abc"}, id="limit-text"),
    pytest.param({"limit": "2.5"}, id="limit-fraction"),
    pytest.param({"limit": ""}, id="limit-empty"),
    pytest.param({"cursor": "garbage"}, id="cursor-garbage"),
    pytest.param({"cursor": "eyJwayI6IngifQ"}, id="cursor-foreign-json"),
    pytest.param({"sort": "asc"}, id="unknown-parameter"),
    # str.isdigit() accepts these, int() does not: once a 500
    pytest.param({"limit": "²"}, id="limit-superscript-digit"),
    pytest.param({"limit": "1²"}, id="limit-with-superscript-digit"),
]


def test_a_bad_listing_query_is_invalid_query(service: Service, subtests: pytest.Subtests) -> None:
    service.create_job(ok_job())
    for case in BAD_QUERIES:
        (query,) = case.values
        with subtests.test(case.id):
            assert_error(service.api("GET", "/jobs", query=query), 400, "INVALID_QUERY")


def test_a_cursor_of_tenant_a_used_by_tenant_b_is_invalid_query(service: Service) -> None:
    # Given a cursor from tenant A's listing (and jobs for both tenants)
    for _ in range(3):
        service.create_job(ok_job())
        service.create_job(ok_job(), key=service.key_b)
    status, page, _ = service.api("GET", "/jobs", query={"limit": "1"})
    assert status == 200
    assert page["nextCursor"]

    # When tenant B sends it
    response = service.api("GET", "/jobs", key=service.key_b, query={"limit": "1", "cursor": page["nextCursor"]})

    # Then it is refused, while tenant A can use it
    assert_error(response, 400, "INVALID_QUERY")
    status, rest, _ = service.api("GET", "/jobs", query={"limit": "5", "cursor": page["nextCursor"]})
    assert status == 200
    assert rest["count"] == 2


# --- ids and states ---


def test_an_unknown_job_is_not_found(service: Service, subtests: pytest.Subtests) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/retry")):
        for missing_id in ("0b6f2d5e-0000-4000-8000-000000000000", "not-a-uuid", "%20"):
            with subtests.test(method=method, suffix=suffix, job_id=missing_id):
                assert_error(service.api(method, f"/jobs/{missing_id}{suffix}"), 404, "NOT_FOUND")


def test_retry_of_a_job_that_has_not_failed_is_invalid_state(service: Service) -> None:
    # Given a pending, a scheduled and a completed job
    pending = service.create_job(ok_job())
    scheduled = service.create_job(ok_job(delaySeconds=3600))
    completed = service.create_job(ok_job())
    service.drain()  # runs pending and completed
    pending_again = service.create_job(ok_job())

    # Then none of them can be retried, and none changed
    for job in (pending_again, scheduled, completed, pending):
        before = service.job(job["id"])
        assert_error(service.api("POST", f"/jobs/{job['id']}/retry"), 409, "INVALID_STATE")
        assert service.job(job["id"]) == before


def test_cancel_of_a_finished_or_running_job_is_invalid_state(service: Service) -> None:
    # Given a completed, a failed, a cancelled and a processing job
    completed = service.create_job(ok_job())
    failed = service.create_job(failing_job(max_attempts=1))
    service.drain()
    cancelled = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{cancelled['id']}")
    processing = service.create_job(ok_job())
    record = service.record(processing["id"])
    service.repo.save(record, record.model_copy(update={"status": JobStatus.PROCESSING, "attempts": 1}))

    # Then none of them can be cancelled, and none changed
    for job in (completed, failed, cancelled, processing):
        before = service.job(job["id"])
        assert_error(service.api("DELETE", f"/jobs/{job['id']}"), 409, "INVALID_STATE")
        assert service.job(job["id"]) == before
    assert service.job(completed["id"])["status"] == "completed"
    assert service.job(failed["id"])["status"] == "failed"


# --- routes ---


UNKNOWN_ROUTES = [
    ("GET", "/nope"),
    ("GET", "/jobs/abc/history"),
    ("POST", "/jobs/abc/cancel"),
]
# A path that exists, with a method it does not declare: 405 and the methods it does declare.
UNDECLARED_METHODS = [
    ("POST", "/", "GET"),  # GET / is the dashboard's page
    ("PUT", "/jobs", "GET, POST"),
    ("PATCH", "/jobs/abc", "DELETE, GET"),
    ("GET", "/enqueue", "POST"),
    ("DELETE", "/stats", "GET"),
    ("PUT", "/hooks/message", "POST"),
]


def test_an_unknown_route_is_not_found(service: Service, subtests: pytest.Subtests) -> None:
    for method, path in UNKNOWN_ROUTES:
        with subtests.test(method=method, path=path):
            assert_error(service.api(method, path), 404, "NOT_FOUND")


def test_a_method_a_path_does_not_declare_is_405_with_allow(service: Service, subtests: pytest.Subtests) -> None:
    for method, path, allowed in UNDECLARED_METHODS:
        with subtests.test(method=method, path=path):
            # When a path that exists is asked with a method it does not declare
            response = service.api(method, path)
            # Then the answer is 405 METHOD_NOT_ALLOWED, its Allow header listing the declared methods
            assert_error(response, 405, "METHOD_NOT_ALLOWED")
            assert response.headers["Allow"] == allowed


def test_a_long_unknown_path_is_not_echoed_whole(service: Service) -> None:
    response = service.api("GET", "/nope/" + "x" * 5000)
    assert_error(response, 404, "NOT_FOUND")
    assert len(response.body["error"]) < 200


# --- keys ---


@pytest.mark.parametrize("key", [None, "", "nosuchkey1"], ids=["no-key-id", "empty-key-id", "unknown-key-id"])
def test_every_route_but_health_is_forbidden_without_a_known_key(
    service: Service, job_id: str, subtests: pytest.Subtests, key: str | None
) -> None:
    before = service.job(job_id)
    for method, path, body in PROTECTED_ROUTES:
        with subtests.test(method=method, path=path):
            assert_error(service.api(method, path.format(id=job_id), body, key=key), 403, "FORBIDDEN")

    # And nothing was written on the way
    assert service.job(job_id) == before
    assert service.stats()["enqueued"] == 1


@pytest.mark.parametrize(
    ("tenant", "revoked"),
    [
        pytest.param("not a tenant!", False, id="bad-tenant-name"),
        pytest.param("", False, id="empty-tenant"),
        pytest.param(TENANT_A, True, id="revoked"),
    ],
)
def test_a_key_that_names_no_valid_tenant_is_forbidden(service: Service, tenant: str, revoked: bool) -> None:
    # Given a stored key that names no usable tenant, or was revoked
    value = "odd-key-0123456789abcdef"
    stored = StoredKey(
        "odd", tenant, "full", "odd", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z" if revoked else None
    )
    DynamoKeyStore(service.dynamodb, service.settings.keys_table).add(stored, hash_key(value))
    service.key_values["odd"] = value

    # Then it opens nothing, and writes nothing
    assert_error(service.api("POST", "/jobs", ok_job(), key="odd"), 403, "FORBIDDEN")
    assert_error(service.api("GET", "/stats", key="odd"), 403, "FORBIDDEN")
    assert service.queue_is_empty()


# --- tenants ---


def test_another_tenants_job_is_not_found_and_untouched(service: Service) -> None:
    # Given a pending job and a cancelled (so retryable) job of tenant A
    pending = service.create_job(ok_job())
    cancelled = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{cancelled['id']}")
    before = {job_id: service.job(job_id) for job_id in (pending["id"], cancelled["id"])}

    # When tenant B reads, cancels and retries them
    # Then each is 404, as if they did not exist
    for job_id in before:
        assert_error(service.api("GET", f"/jobs/{job_id}", key=service.key_b), 404, "NOT_FOUND")
        assert_error(service.api("DELETE", f"/jobs/{job_id}", key=service.key_b), 404, "NOT_FOUND")
        assert_error(service.api("POST", f"/jobs/{job_id}/retry", key=service.key_b), 404, "NOT_FOUND")

    # And tenant A's jobs did not change
    assert {job_id: service.job(job_id) for job_id in before} == before


def test_another_tenants_jobs_are_not_listed_or_counted(service: Service) -> None:
    # Given jobs of tenant A only (one cancelled)
    first = service.create_job(ok_job())
    service.create_job({"type": "message", "payload": {"message": "hi"}})
    service.api("DELETE", f"/jobs/{first['id']}")

    # Then tenant B lists and counts nothing, with or without filters
    for query in (None, {"status": "pending"}, {"status": "cancelled"}, {"type": "message"}):
        status, body, _ = service.api("GET", "/jobs", key=service.key_b, query=query)
        assert (status, body["jobs"], body["nextCursor"]) == (200, [], None)
    b_stats = service.stats(key=service.key_b)
    assert (b_stats["enqueued"], b_stats["total"], b_stats["pending"], b_stats["cancelled"]) == (0, 0, 0, 0)

    # While tenant A sees its own
    a_stats = service.stats()
    assert (a_stats["enqueued"], a_stats["pending"], a_stats["cancelled"]) == (2, 1, 1)

    # And B's own job is counted for B only
    service.create_job(ok_job(), key=service.key_b)
    assert service.stats(key=service.key_b)["pending"] == 1
    assert service.stats()["pending"] == 1


# --- outages ---


def _fail_calls(service_name: str, error: Exception) -> Callable[[], None]:
    """Make every call of the functions' client for ``service_name`` raise ``error``; returns the undo."""

    def refuse(**_: Any) -> None:
        raise error

    events = client(service_name).meta.events
    events.register(f"before-call.{service_name}", refuse, unique_id="integration-outage")

    def undo() -> None:
        events.unregister(f"before-call.{service_name}", unique_id="integration-outage")

    return undo


OUTAGES = {
    "connection": EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    "throttled": ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "Operation"
    ),
    "internal": ClientError({"Error": {"Code": "InternalServerError", "Message": "oops"}}, "Operation"),
}


@pytest.fixture(params=sorted(OUTAGES))
def dynamodb_outage(request: pytest.FixtureRequest, service: Service) -> Iterator[Callable[[], None]]:
    """Call the returned function to take DynamoDB down for the functions (until the test ends)."""
    undo: list[Callable[[], None]] = []

    def start() -> None:
        undo.append(_fail_calls("dynamodb", OUTAGES[request.param]))

    yield start
    for step in undo:
        step()


def test_a_dynamodb_outage_is_503_unavailable_on_every_route(
    service: Service, job_id: str, dynamodb_outage: Callable[[], None], subtests: pytest.Subtests
) -> None:
    # Given DynamoDB failing every call
    dynamodb_outage()

    for method, path, body in PROTECTED_ROUTES:
        with subtests.test(method=method, path=path):
            # Then each route answers 503 UNAVAILABLE, with no internals in the body
            error = assert_error(service.api(method, path.format(id=job_id), body), 503, "UNAVAILABLE")
            assert "dynamodb" not in error["error"].lower()


def test_health_does_not_depend_on_storage(service: Service, dynamodb_outage: Callable[[], None]) -> None:
    dynamodb_outage()

    assert service.api("GET", "/health", key=None).status == 200


def test_a_keys_table_outage_fails_the_authorizer_without_caching_a_refusal(service: Service) -> None:
    # Given the authorizer's key lookup failing (a key it has not seen yet, so nothing is cached)
    value = service.key_values[service.key_b]
    undo = _fail_calls("dynamodb", EndpointConnectionError(endpoint_url="https://dynamodb"))
    try:
        # Then the authorizer fails (API Gateway answers 500 and caches nothing) rather than refusing the key
        with pytest.raises(StorageError):
            authorizer.handler(authorizer_event(value), None)
    finally:
        undo()
    # And once DynamoDB is back, the same key is accepted
    assert authorizer.handler(authorizer_event(value), None)["context"]["tenant"] == TENANT_B
    assert service.api("GET", "/stats", key=service.key_b).status == 200


def test_an_unexpected_error_is_500_without_a_traceback(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bug deep inside the storage layer
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals at /var/task/functions/dal/jobs_repository.py line 42")

    monkeypatch.setattr(type(service.repo), "counters", broken)

    # Then the client gets the contract's error shape and nothing of the internals
    error = assert_error(service.api("GET", "/stats"), 500, "INTERNAL")
    assert "secret" not in error["error"]


def test_an_sqs_outage_during_retry_still_accepts_it_and_leaves_it_to_the_sweeper(service: Service) -> None:
    # Given a cancelled job, and SQS refusing to send
    job = service.create_job(ok_job())
    service.api("DELETE", f"/jobs/{job['id']}")
    service.drain()
    undo = _fail_calls("sqs", EndpointConnectionError(endpoint_url="https://sqs"))
    try:
        # When it is retried
        status, body, _ = service.api("POST", f"/jobs/{job['id']}/retry")
    finally:
        undo()

    # Then it is accepted, pending, marked for the sweeper, and nothing is queued
    assert (status, body["status"]) == (202, "pending")
    record = service.record(job["id"], TENANT_A)
    assert record.status == JobStatus.PENDING
    assert record.sweep_at is not None
    assert service.queue_is_empty()
