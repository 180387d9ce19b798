"""webhook-delivery: the payload contract, the signature scheme, failure classification, the per-tenant secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.adapters.net import BlockedAddress, ConnectionFailed, NetError, RequestTimeout, Response, SafeHttpClient
from functions.dal import secrets as secrets_dal
from functions.dal.secrets import WebhookSecrets
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.webhook import (
    WebhookPayload,
    encode_body,
    signature_header,
    verify_signature,
    webhook_delivery,
)
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError, StorageError
from functions.settings import Settings

JOB_ID = "0b9d7c1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
SECRET = "a" * 64


class FakeSecretsManager:
    """The two Secrets Manager calls the DAL makes, over a dict; errors can be injected per call."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.calls: list[str] = []
        self.fail_create_with: str | None = None
        self.fail_get_with: str | None = None

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.calls.append("get")
        if self.fail_get_with:
            raise _client_error(self.fail_get_with)
        if SecretId not in self.values:
            raise _client_error("ResourceNotFoundException")
        return {"Name": SecretId, "SecretString": self.values[SecretId]}

    def create_secret(self, Name: str, SecretString: str, Description: str) -> dict[str, Any]:
        self.calls.append("create")
        if self.fail_create_with:
            if self.fail_create_with == "ResourceExistsException":
                self.values[Name] = "created-by-someone-else"
            raise _client_error(self.fail_create_with)
        if Name in self.values:
            raise _client_error("ResourceExistsException")
        self.values[Name] = SecretString
        return {"Name": Name}


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    secrets_dal.clear_cache()


def context(secretsmanager: FakeSecretsManager, attempt: int = 1) -> JobContext:
    return JobContext(
        job_id=JOB_ID,
        tenant="acme",
        attempt=attempt,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(),
        client=lambda service: secretsmanager,
    )


def payload(**fields: Any) -> WebhookPayload:
    return WebhookPayload.model_validate({"url": "https://hooks.example.com/in", "body": {"a": 1}, **fields})


class Recorder:
    """Replaces SafeHttpClient.request: records the call, answers a status or raises a network error."""

    def __init__(self, status: int = 200, error: NetError | None = None, body: bytes = b"") -> None:
        self.status, self.error, self.body = status, error, body
        self.calls: list[dict[str, Any]] = []

    def __call__(self, client: SafeHttpClient, method: str, url: str, **kwargs: Any) -> Response:
        self.calls.append({"client": client, "method": method, "url": url, **kwargs})
        if self.error is not None:
            raise self.error
        return Response(self.status, "Reason", {}, self.body, url)


@pytest.fixture
def send(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()

    def request(self: SafeHttpClient, method: str, url: str, **kwargs: Any) -> Response:
        return recorder(self, method, url, **kwargs)

    monkeypatch.setattr(SafeHttpClient, "request", request)
    return recorder


# --- signing ---


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_as_documented() -> None:
    # Given
    body = encode_body({"event": "paid", "amount": 12.5, "name": "Zoë"})
    # When
    header = signature_header(SECRET, 1_700_000_000, body)
    # Then: recomputed independently, exactly as a receiver would from the README
    timestamp, v1 = (item.split("=", 1)[1] for item in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert v1 == expected
    assert body == '{"event":"paid","amount":12.5,"name":"Zoë"}'.encode()


def test_the_reference_verifier_accepts_good_signatures_and_rejects_the_rest() -> None:
    body = b'{"a":1}'
    now = time.time()
    header = signature_header(SECRET, int(now), body)
    assert verify_signature(SECRET, header, body, now=now)
    assert not verify_signature(SECRET, header, b'{"a":2}', now=now)  # tampered body
    assert not verify_signature("b" * 64, header, body, now=now)  # another tenant's secret
    assert not verify_signature(SECRET, header, body, now=now + 301)  # replayed too late
    assert not verify_signature(SECRET, "v1=abc", body, now=now)  # no timestamp
    assert verify_signature(SECRET, f"{header},v1=deadbeef", body, now=now)  # several v1: one must match


def test_a_delivery_sends_the_signed_body_and_the_idempotency_key(send: Recorder) -> None:
    # Given
    secretsmanager = FakeSecretsManager({"jobs/webhook-signing/acme": SECRET})
    # When
    result = webhook_delivery(
        payload(method="put", headers={"X-Custom": "yes", "content-type": "application/vnd.x+json"}),
        context(secretsmanager, attempt=2),
    )
    # Then
    assert result == {"status": 200, "attempt": 2}
    call = send.calls[0]
    headers = call["headers"]
    assert call["method"] == "PUT" and call["url"] == "https://hooks.example.com/in"
    assert call["max_redirects"] == 0
    assert call["body"] == b'{"a":1}'
    assert headers["Idempotency-Key"] == JOB_ID
    assert headers["X-Jobs-Attempt"] == "2"
    assert headers["X-Custom"] == "yes"
    assert headers["content-type"] == "application/vnd.x+json" and "Content-Type" not in headers
    assert headers["X-Jobs-Signature"].startswith(f"t={headers['X-Jobs-Timestamp']},v1=")
    assert verify_signature(SECRET, headers["X-Jobs-Signature"], call["body"])


def test_a_name_repeated_in_another_case_is_sent_once_with_the_later_value(send: Recorder) -> None:
    # Given headers the document allows: two JSON keys that are one header name, each value at its 4 KiB bound
    headers = {"X-Token": "a" * 4096, "x-token": "b" * 4096}
    # When it is delivered
    webhook_delivery(payload(headers=headers), context(FakeSecretsManager({"jobs/webhook-signing/acme": SECRET})))
    # Then the header goes once, with the later value
    sent = send.calls[0]["headers"]
    assert [name for name in sent if name.lower() == "x-token"] == ["x-token"]
    assert sent["x-token"] == "b" * 4096


# --- classification ---


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_completes_with_the_status(send: Recorder, status: int) -> None:
    send.status = status
    assert webhook_delivery(payload(), context(FakeSecretsManager())) == {"status": status, "attempt": 1}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_5xx_retry(send: Recorder, status: int) -> None:
    send.status = status
    with pytest.raises(RetryableJobError, match=f"webhook endpoint answered HTTP {status}"):
        webhook_delivery(payload(), context(FakeSecretsManager()))


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_other_statuses_fail_permanently(send: Recorder, status: int) -> None:
    send.status, send.body = status, b"no such hook"
    with pytest.raises(PermanentJobError, match=f"HTTP {status}") as raised:
        webhook_delivery(payload(), context(FakeSecretsManager()))
    if status < 400:
        assert "redirects are not followed" in str(raised.value)
    else:
        assert "no such hook" in str(raised.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RequestTimeout("hooks.example.com did not answer in time"), RetryableJobError),
        (ConnectionFailed("connection refused"), RetryableJobError),
        (BlockedAddress("refused to connect to 10.0.0.1: private address"), PermanentJobError),
    ],
)
def test_network_errors_are_classified(send: Recorder, error: NetError, expected: type[Exception]) -> None:
    send.error = error
    with pytest.raises(expected, match="webhook delivery failed: " + error.message):
        webhook_delivery(payload(), context(FakeSecretsManager()))


# --- payload ---


def parse(raw: dict[str, Any]) -> WebhookPayload:
    return get_job_type("webhook-delivery").parse_payload(raw)  # type: ignore[no-any-return]


def test_defaults_and_any_json_body() -> None:
    parsed = parse({"url": "http://example.com/hook", "body": [1, "two", None, {"x": True}]})
    assert parsed.method == "POST" and parsed.headers == {} and parsed.body == [1, "two", None, {"x": True}]
    assert parse({"url": "http://example.com/hook", "body": None}).body is None


@pytest.mark.parametrize(
    "raw",
    [
        {"url": "ftp://example.com/x", "body": {}},
        {"url": "http://10.0.0.1:99999/x", "body": {}},
        {"url": "https://u:p@example.com/", "body": {}},
        {"url": "https://example.com/", "body": {}, "method": "DELETE"},
        {"url": "https://example.com/", "body": {}, "method": "GET"},
        {"url": "https://example.com/"},
        {"url": "https://example.com/", "body": {}, "extra": 1},
        {"url": "https://example.com/", "body": {}, "headers": {"Host": "internal"}},
        {"url": "https://example.com/", "body": {}, "headers": {"Content-Length": "1"}},
        {"url": "https://example.com/", "body": {}, "headers": {"Transfer-Encoding": "chunked"}},
        {"url": "https://example.com/", "body": {}, "headers": {"connection": "close"}},
        {"url": "https://example.com/", "body": {}, "headers": {"X-Jobs-Signature": "forged"}},
        {"url": "https://example.com/", "body": {}, "headers": {"Idempotency-Key": "mine"}},
        {"url": "https://example.com/", "body": {}, "headers": {"X-A": "1\r\nHost: evil"}},
        {"url": "https://example.com/", "body": {}, "headers": {"bad name": "1"}},
        {"url": "https://example.com/", "body": {}, "headers": {"X-A": 1}},
        {"url": "https://example.com/", "body": {}, "headers": {f"X-{n}": "v" for n in range(51)}},
        {"url": "https://example.com/", "body": {}, "headers": {"X-Big": "v" * 4097}},
    ],
)
def test_invalid_payloads_are_refused_at_enqueue(raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload) as raised:
        parse(raw)
    assert raised.value.details


# --- the per-tenant secret ---


def test_a_missing_secret_is_created_once_and_cached() -> None:
    # Given no secret for the tenant yet
    client = FakeSecretsManager()
    store = WebhookSecrets(client, "jobs/webhook-signing/")
    # When
    first = store.secret_for("acme")
    second = store.secret_for("acme")
    # Then
    assert first == second == client.values["jobs/webhook-signing/acme"]
    assert len(first) == 64 and int(first, 16) >= 0
    assert client.calls == ["get", "create"]


def test_losing_the_creation_race_reads_the_winners_secret() -> None:
    client = FakeSecretsManager()
    client.fail_create_with = "ResourceExistsException"
    assert WebhookSecrets(client, "p/").secret_for("acme") == "created-by-someone-else"
    assert client.calls == ["get", "create", "get"]


@pytest.mark.parametrize("failing", ["get", "create"])
def test_sdk_errors_are_storage_errors(failing: str) -> None:
    client = FakeSecretsManager()
    if failing == "get":
        client.fail_get_with = "ThrottlingException"
    else:
        client.fail_create_with = "AccessDeniedException"
    with pytest.raises(StorageError, match="Secrets Manager"):
        WebhookSecrets(client, "p/").secret_for("acme")


def test_tenants_have_their_own_secrets() -> None:
    client = FakeSecretsManager()
    store = WebhookSecrets(client, "p/")
    assert store.secret_for("a") != store.secret_for("b")
    assert sorted(client.values) == ["p/a", "p/b"]


def test_encoded_body_is_compact_utf8_json() -> None:
    assert json.loads(encode_body({"k": ["é", 1]})) == {"k": ["é", 1]}
    assert encode_body({"k": "é"}) == '{"k":"é"}'.encode()
