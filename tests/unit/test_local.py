"""The local stack's pure helpers: API key parsing, the API Gateway proxy event, the stream source's pauses."""

from __future__ import annotations

import base64

import pytest

from infra.config import AWS_CONFIG, local_config
from local.aws import SeedKey, parse_api_keys
from local.gateway import build_event
from local.stream_source import pause_after

# --- API keys ---


def test_api_keys_spec_maps_each_key_to_its_tenant() -> None:
    assert parse_api_keys("key1:tenantA,key2:tenantB") == {"key1": SeedKey("tenantA"), "key2": SeedKey("tenantB")}


def test_api_keys_spec_may_give_a_keys_scope() -> None:
    assert parse_api_keys("key1:tenantA:read,key2:tenantA:full") == {
        "key1": SeedKey("tenantA", "read"),
        "key2": SeedKey("tenantA", "full"),
    }


def test_api_keys_spec_tolerates_spaces_and_empty_entries() -> None:
    assert parse_api_keys(" key1:tenantA , ,key2:tenantB,") == {"key1": SeedKey("tenantA"), "key2": SeedKey("tenantB")}


def test_an_empty_api_keys_spec_has_no_keys() -> None:
    assert parse_api_keys("") == {}


@pytest.mark.parametrize(
    "spec", ["key1", "key1:", ":tenantA", "key1:tenantA,broken", ":", "key1:tenantA:write", "key1:tenantA:read:x"]
)
def test_an_api_keys_entry_without_key_or_tenant_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="key:tenant"):
        parse_api_keys(spec)


# --- proxy event ---


def _event(raw_path: str = "/jobs", body: bytes = b"", method: str = "GET", **kw: object) -> dict:
    args = {
        "headers": {"x-api-key": "k", "user-agent": "pytest"},
        "authorizer_context": {"tenant": "acme", "keyId": "key-id-1", "scope": "full"},
        "source_ip": "127.0.0.1",
        **kw,
    }
    return build_event(method, raw_path, body=body, **args)  # type: ignore[arg-type]


def test_the_event_carries_method_path_headers_and_identity() -> None:
    event = _event("/jobs/abc/retry", method="POST", body=b'{"a": 1}')
    assert (event["httpMethod"], event["path"]) == ("POST", "/jobs/abc/retry")
    assert event["requestContext"]["httpMethod"] == "POST"
    assert event["requestContext"]["path"].endswith("/jobs/abc/retry")
    assert event["pathParameters"] == {"proxy": "jobs/abc/retry"}
    assert event["headers"]["x-api-key"] == "k"
    assert event["multiValueHeaders"]["user-agent"] == ["pytest"]
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["authorizer"] == {"tenant": "acme", "keyId": "key-id-1", "scope": "full"}
    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)


def test_the_event_of_an_open_route_has_no_authorizer_context() -> None:
    event = _event("/health", authorizer_context=None)
    assert event["requestContext"]["authorizer"] is None


def test_query_strings_keep_single_and_multiple_values() -> None:
    # Given a repeated parameter, a single one and a blank one
    event = _event("/jobs?status=failed&status=pending&limit=5&cursor=")
    # Then the single-value map keeps the last value (as API Gateway does) and the multi-value map keeps all
    assert event["queryStringParameters"] == {"status": "pending", "limit": "5", "cursor": ""}
    assert event["multiValueQueryStringParameters"] == {"status": ["failed", "pending"], "limit": ["5"], "cursor": [""]}
    assert event["path"] == "/jobs"


def test_query_values_are_url_decoded() -> None:
    event = _event("/jobs?type=a%20b&cursor=x%3D%3D")
    assert event["queryStringParameters"] == {"type": "a b", "cursor": "x=="}


def test_no_query_string_gives_null_maps() -> None:
    event = _event("/jobs")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_an_empty_body_is_null() -> None:
    event = _event("/jobs", body=b"")
    assert (event["body"], event["isBase64Encoded"]) == (None, False)


def test_a_utf8_body_is_passed_as_text() -> None:
    event = _event("/enqueue", method="POST", body='{"message": "caf\u00e9"}'.encode())
    assert (event["body"], event["isBase64Encoded"]) == ('{"message": "caf\u00e9"}', False)


def test_a_body_that_is_not_utf8_is_base64_encoded() -> None:
    raw = b"\xff\xfe\x00binary"
    event = _event("/jobs", method="POST", body=raw)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_the_root_path_has_no_path_parameters() -> None:
    assert _event("/")["pathParameters"] is None


# --- the stream source's pauses ---


@pytest.mark.parametrize(
    ("handled", "pause"),
    [(0, 0.25), (1, 1.0), (99, 1.0), (100, 0.0)],
)
def test_the_stream_source_polls_when_empty_gathers_after_a_partial_batch_and_drains_a_backlog(
    handled: int, pause: float
) -> None:
    assert pause_after(handled, batch_size=100, interval_seconds=0.25, batching_window_seconds=1.0) == pause


def test_the_aggregator_gathers_records_on_aws_and_counts_them_at_once_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AWS_CONFIG.stats_stream.batching_window_seconds == 1
    monkeypatch.delenv("JOBS_LOCAL_AWS_SHARDS", raising=False)
    assert local_config().stats_stream.batching_window_seconds == 0
    # The cost recording runs as on AWS
    monkeypatch.setenv("JOBS_LOCAL_AWS_SHARDS", "1")
    assert local_config().stats_stream.batching_window_seconds == 1
