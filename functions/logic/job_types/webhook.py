"""``webhook-delivery``: POST/PUT/PATCH a JSON body to a URL, signed with the tenant's secret.

Every delivery carries:

- ``X-Jobs-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>`` (the scheme Stripe uses:
  the receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares in constant time and
  rejects timestamps too far from its clock);
- ``X-Jobs-Timestamp: <t>`` (the same ``t``), ``X-Jobs-Attempt: <n>``;
- ``Idempotency-Key: <job id>``, the same on every attempt, so receivers can drop duplicates.

2xx → completed ``{"status", "attempt"}``; 408, 429, 5xx, timeouts and network errors → retried; other statuses
(4xx, and 3xx: redirects are not followed for webhooks) and refused addresses → failed at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, ConfigDict, Field, JsonValue, field_validator

from functions.adapters.net import (
    FORBIDDEN_REQUEST_HEADERS,
    NetError,
    Response,
    SafeHttpClient,
    job_failure,
    validate_http_url,
)
from functions.adapters.net import status_failure as _status_failure
from functions.dal.secrets import WebhookSecrets
from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.bounds import HTTP_URL_PATTERN

SIGNATURE_HEADER = "X-Jobs-Signature"
TIMESTAMP_HEADER = "X-Jobs-Timestamp"
ATTEMPT_HEADER = "X-Jobs-Attempt"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "jobs-webhook/1.0"
MAX_HEADERS = 50
# Per header value: a total over all headers is a rule the API document cannot state, so each value has its own bound.
MAX_HEADER_VALUE_CHARS = 4 * 1024
# Only the status matters; a receiver's chatty answer is cut here rather than failing a delivered webhook.
MAX_RESPONSE_BYTES = 64 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_RESERVED_HEADERS = frozenset(
    name.lower() for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER, ATTEMPT_HEADER, IDEMPOTENCY_HEADER)
)

HttpUrl = Annotated[
    str, Field(min_length=1, max_length=2048, pattern=HTTP_URL_PATTERN), AfterValidator(validate_http_url)
]


def _headers_schema(schema: dict[str, Any]) -> None:
    """What ``_headers`` checks, for the document."""
    refused = "|".join(re.escape(name) for name in sorted(FORBIDDEN_REQUEST_HEADERS | _RESERVED_HEADERS))
    schema["maxProperties"] = MAX_HEADERS
    schema["propertyNames"] = {"pattern": _TOKEN.pattern, "not": {"pattern": f"(?i)^({refused})$"}}
    schema["additionalProperties"] = {
        "type": "string",
        "maxLength": MAX_HEADER_VALUE_CHARS,
        "pattern": r"^[\t\x20-\x7e\x80-\xff]*$",
    }


def _method_schema(schema: dict[str, Any]) -> None:
    """``_upper``: the method in any case."""
    schema.pop("enum", None)
    schema["pattern"] = "^(?i:POST|PUT|PATCH)$"


class WebhookPayload(Payload):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", json_schema_extra=_method_schema)
    headers: dict[str, str] = Field(default_factory=dict, json_schema_extra=_headers_schema)
    body: JsonValue

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        for name, header_value in value.items():
            lower = name.lower()
            if not _TOKEN.match(name):
                raise ValueError(f"'{name[:64]}' is not a valid header name")
            if lower in FORBIDDEN_REQUEST_HEADERS:
                raise ValueError(f"header '{name}' cannot be set (hop-by-hop, Host and framing are the sender's)")
            if lower in _RESERVED_HEADERS:
                raise ValueError(f"header '{name}' is set by the service")
            if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in header_value):
                raise ValueError(f"header '{name}' contains control characters")
            try:
                header_value.encode("latin-1")
            except UnicodeEncodeError as exc:
                raise ValueError(f"header '{name}' must be Latin-1 text") from exc
            if len(header_value) > MAX_HEADER_VALUE_CHARS:
                raise ValueError(f"header '{name}' is over {MAX_HEADER_VALUE_CHARS} characters")
        return value


def encode_body(body: Any) -> bytes:
    """The exact bytes sent and signed: compact JSON, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed by the secret's UTF-8 bytes."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def signed_headers(secret: str, timestamp: int, body: bytes, *, attempt: int, idempotency_key: str) -> dict[str, str]:
    """What lets a receiver check a delivery (``verify_signature``) and recognise one it has already seen."""
    return {
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        ATTEMPT_HEADER: str(attempt),
        IDEMPOTENCY_HEADER: idempotency_key,
    }


class HttpSender(Protocol):
    """What a delivery needs of ``SafeHttpClient`` (tests pass a fake)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        max_redirects: int = ...,
        truncate: bool = False,
    ) -> Response: ...


def deliver(client: HttpSender, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
    """One signed delivery (a webhook, a completion callback): the receiver must answer itself (no redirect is
    followed, its signature would not go along) and only its status matters (the answer is cut, not refused)."""
    return client.request(
        method, url, headers=headers, body=body, max_bytes=MAX_RESPONSE_BYTES, max_redirects=0, truncate=True
    )


def answer_detail(response: Response, redirect_refused: str) -> str:
    """What to say of a refusing answer: the start of its body, or for a redirect where it pointed."""
    if 300 <= response.status <= 399:
        return f"{redirect_refused} (Location: {response.headers.get('location', '')})"
    return response.body[:200].decode("utf-8", "replace").strip()


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """A receiver's check (reference implementation): parse ``t``/``v1``, check freshness, compare in constant time."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


def tenant_secret(ctx: JobContext) -> str:
    return WebhookSecrets(ctx.client("secretsmanager"), ctx.settings.webhook_secret_prefix).secret_for(ctx.tenant)


@job_type("webhook-delivery", payload=WebhookPayload)
def webhook_delivery(payload: WebhookPayload, ctx: JobContext) -> dict[str, Any]:
    body = encode_body(payload.body)
    secret = tenant_secret(ctx)
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    # The caller's headers replace the defaults whatever their case; a name given twice in two cases (JSON keys are
    # case-sensitive, so the document cannot refuse it) is sent once, with the later value.
    for name, value in payload.headers.items():
        headers = {key: kept for key, kept in headers.items() if key.lower() != name.lower()}
        headers[name] = value
    headers.update(signed_headers(secret, timestamp, body, attempt=ctx.attempt, idempotency_key=ctx.job_id))
    client = SafeHttpClient.from_settings(ctx.settings, user_agent=USER_AGENT)
    try:
        response = deliver(client, payload.method, payload.url, headers, body)
    except NetError as exc:
        raise job_failure(exc, "webhook delivery") from exc
    if not response.ok:
        detail = answer_detail(response, "redirects are not followed for webhooks")
        raise _status_failure(response.status, response.reason, "webhook endpoint", detail)
    ctx.logger.info("webhook delivered", extra={"status": response.status, "url": payload.url})
    return {"status": response.status, "attempt": ctx.attempt}
