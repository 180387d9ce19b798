"""fetch: payload limits, failure classification, and what is stored and returned."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.adapters.net import (
    BlockedAddress,
    ConnectionFailed,
    NetError,
    RequestTimeout,
    Response,
    ResponseTooLarge,
    SafeHttpClient,
)
from functions.logic.enqueue import parse_job_spec
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.fetch import FetchPayload, fetch
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError
from functions.settings import Settings

JOB_ID = "5d1e0f3a-9b8c-4d7e-a6f5-0e1d2c3b4a59"


class FakeS3:
    def __init__(self, fail: bool = False) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail = fail

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        if self.fail:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")
        self.objects[(Bucket, Key)] = {"Body": Body, "ContentType": ContentType}
        return {}


class Answer:
    def __init__(self) -> None:
        self.response = Response(200, "OK", {"content-type": "text/plain; charset=utf-8"}, b"hello", "")
        self.error: NetError | None = None
        self.calls: list[dict[str, Any]] = []


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> Answer:
    state = Answer()

    def request(self: SafeHttpClient, method: str, url: str, **kwargs: Any) -> Response:
        state.calls.append({"method": method, "url": url, "timeout": self.timeout, **kwargs})
        if state.error is not None:
            raise state.error
        return Response(**{**state.response.__dict__, "url": state.response.url or url})

    monkeypatch.setattr(SafeHttpClient, "request", request)
    return state


def context(s3: FakeS3, **settings: Any) -> JobContext:
    return JobContext(
        job_id=JOB_ID,
        tenant="acme",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(**settings),
        client=lambda service: s3,
    )


def test_a_2xx_body_is_stored_and_described(answer: Answer) -> None:
    # Given
    s3 = FakeS3()
    answer.response = Response(
        200, "OK", {"content-type": "text/csv"}, b"a,b\n1,2\n", "https://cdn.example.com/final.csv"
    )
    # When
    result = fetch(FetchPayload(url="https://example.com/data.csv"), context(s3, files_bucket="files"))
    # Then
    assert result == {
        "key": f"fetched/{JOB_ID}",
        "contentType": "text/csv",
        "size": 8,
        "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        "status": 200,
        "url": "https://cdn.example.com/final.csv",
    }
    assert s3.objects[("files", f"fetched/{JOB_ID}")] == {"Body": b"a,b\n1,2\n", "ContentType": "text/csv"}
    assert answer.calls[0]["method"] == "GET"


def test_the_limits_come_from_settings_and_the_payload(answer: Answer) -> None:
    # When maxBytes is given it is the limit; otherwise the setting is; the timeout is the setting
    fetch(FetchPayload(url="http://example.com/", maxBytes=100), context(FakeS3(), http_timeout_seconds=3))
    fetch(FetchPayload(url="http://example.com/"), context(FakeS3(), fetch_max_bytes=5000))
    # Then
    assert answer.calls[0]["max_bytes"] == 100 and answer.calls[0]["timeout"] == 3
    assert answer.calls[1]["max_bytes"] == 5000


def test_a_missing_content_type_is_stored_as_octet_stream(answer: Answer) -> None:
    answer.response = Response(200, "OK", {}, b"\x00\x01", "")
    s3 = FakeS3()
    assert fetch(FetchPayload(url="http://example.com/x"), context(s3))["contentType"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, PermanentJobError),
        (403, PermanentJobError),
        (410, PermanentJobError),
        (304, PermanentJobError),
        (408, RetryableJobError),
        (429, RetryableJobError),
        (500, RetryableJobError),
        (503, RetryableJobError),
    ],
)
def test_statuses_are_classified(answer: Answer, status: int, expected: type[Exception]) -> None:
    answer.response = Response(status, "X", {}, b"", "")
    s3 = FakeS3()
    with pytest.raises(expected, match=f"HTTP {status}"):
        fetch(FetchPayload(url="http://example.com/x"), context(s3))
    assert s3.objects == {}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ResponseTooLarge("response is larger than the limit of 10 bytes"), PermanentJobError),
        (BlockedAddress("refused to connect to 127.0.0.1: loopback address"), PermanentJobError),
        (RequestTimeout("timed out"), RetryableJobError),
        (ConnectionFailed("reset"), RetryableJobError),
    ],
)
def test_network_errors_are_classified(answer: Answer, error: NetError, expected: type[Exception]) -> None:
    answer.error = error
    with pytest.raises(expected, match="fetch failed: " + error.message):
        fetch(FetchPayload(url="http://example.com/x"), context(FakeS3()))


def test_an_s3_failure_is_retryable(answer: Answer) -> None:
    with pytest.raises(RetryableJobError, match="storing the fetched body in S3 failed"):
        fetch(FetchPayload(url="http://example.com/x"), context(FakeS3(fail=True)))


@pytest.mark.parametrize(
    "raw",
    [
        {"url": "gopher://example.com/"},
        {"url": "http://"},
        {"url": "http://example.com/", "maxBytes": 0},
        {"url": "http://example.com/", "maxBytes": 10 * 1024 * 1024 + 1},
        {"url": "http://example.com/", "maxBytes": "lots"},
        {"url": "http://example.com/", "timeout": 3},
        {},
    ],
)
def test_invalid_payloads_are_refused_at_enqueue(raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        get_job_type("fetch").parse_payload(raw)


def test_the_max_bytes_ceiling_follows_the_settings_given() -> None:
    # Given settings with a lower ceiling than the default
    settings = Settings(fetch_max_bytes=1000)
    fetch_type = get_job_type("fetch")
    # Then a payload over it is refused, one at it accepted, and without settings the default ceiling applies
    with pytest.raises(InvalidPayload, match="fetch"):
        fetch_type.parse_payload({"url": "http://example.com/", "maxBytes": 1001}, settings)
    assert fetch_type.parse_payload({"url": "http://example.com/", "maxBytes": 1000}, settings).max_bytes == 1000
    assert fetch_type.parse_payload({"url": "http://example.com/", "maxBytes": 1001}).max_bytes == 1001


def test_the_max_bytes_ceiling_applies_at_enqueue_as_when_run() -> None:
    # Given settings with a lower ceiling than the default
    settings = Settings(fetch_max_bytes=1000)
    body = {"type": "fetch", "payload": {"url": "http://example.com/", "maxBytes": 1001}}
    # Then POST /jobs's parsing refuses a payload over it, as the consumer's does
    with pytest.raises(InvalidPayload, match="fetch"):
        parse_job_spec(body, 1_795_000_000_000, settings=settings)
    with pytest.raises(InvalidPayload, match="fetch"):
        get_job_type("fetch").parse_payload(body["payload"], settings)


def test_the_max_bytes_ceiling_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a ceiling in the environment, which only the composition root reads (Settings.from_env)
    monkeypatch.setenv("JOBS_FETCH_MAX_BYTES", "1000")
    # Then validation follows the settings it is given, not the environment
    assert get_job_type("fetch").parse_payload({"url": "http://example.com/", "maxBytes": 1001}).max_bytes == 1001
