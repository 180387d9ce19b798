"""HTTP plumbing for the API function: the request body, the caller's tenant, and domain errors as responses."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

# Every request is counted against its key's rate limit: the module loads at init (runtime.py builds the limiter).
import functions.logic.rate_limits  # noqa: F401
from functions.handlers.runtime import key_rate_limiter, logger, runtime
from functions.logic import json_body
from functions.models.errors import (
    ApiError,
    ConcurrentUpdate,
    Conflict,
    Forbidden,
    InvalidBody,
    InvalidQuery,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageError,
    Unavailable,
    shown,
)
from functions.redaction import register_secret


class RequestScopedResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, keeping the current request per thread instead of on a class attribute.

    Powertools stores the request being resolved on ``BaseRouter`` itself (``BaseRouter.current_event = ...``),
    shared by every resolver in the process. On Lambda one invocation runs at a time, so that is harmless; the
    local stack serves concurrent requests on threads of one process, where a request would read another one's
    body, headers and API key (seen as a stray 400 under load). Routers read through their ``api_resolver``, so
    they see the per-thread value too."""

    _request = threading.local()

    @property  # type: ignore[override]
    def current_event(self) -> APIGatewayProxyEvent:
        return cast(APIGatewayProxyEvent, self._request.event)

    @current_event.setter
    def current_event(self, value: APIGatewayProxyEvent) -> None:
        self._request.event = value

    @property
    def lambda_context(self) -> LambdaContext:
        return cast(LambdaContext, getattr(self._request, "context", None))

    @lambda_context.setter
    def lambda_context(self, value: LambdaContext) -> None:
        self._request.context = value

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.current_event = APIGatewayProxyEvent(dict(event))
        self.lambda_context = context
        return super().resolve(event, context)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=headers,
    )


def read_json_body(app: APIGatewayRestResolver | Router) -> Any:
    raw = app.current_event.body or ""
    data = raw.encode()
    if app.current_event.is_base64_encoded:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidBody("the body is not valid base64") from exc
    # Bodies up to this size are accepted; payloads too large for a DynamoDB item are kept in S3 (payloads.py).
    max_bytes = runtime().settings.payload_max_bytes
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the body is {len(data)} bytes; the limit is {max_bytes}")
    if not data.strip():
        raise InvalidBody("the body must be a JSON object")
    return json_body.loads(data)


def read_query(app: APIGatewayRestResolver | Router, allowed: set[str]) -> dict[str, str]:
    """The query string as one value per name: ``INVALID_QUERY`` for a parameter that is unknown, repeated
    (``limit=1&limit=2`` is not silently resolved) or empty."""
    event = cast(APIGatewayProxyEvent, app.current_event)
    for name, values in (event.multi_value_query_string_parameters or {}).items():
        if len(values) > 1:
            raise InvalidQuery(f"'{shown(name)}' is given {len(values)} times; give it once")
    query = dict(event.query_string_parameters or {})
    unknown = sorted(set(query) - allowed)
    if unknown:
        names = ", ".join(shown(name) for name in unknown)
        raise InvalidQuery(f"unknown query parameter(s): {names}; accepted: {', '.join(sorted(allowed)) or 'none'}")
    for name, value in query.items():
        if value == "":
            raise InvalidQuery(f"'{name}' is empty: give a value or leave it out")
    return query


# What a ``read`` key may do: read. Every route that changes something is another method.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the authorizer found the key (functions/handlers/authorizer.py)."""

    tenant: str
    key_id: str
    scope: str
    rate_limit: float
    burst_limit: int


def authorizer_context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Lambda authorizer's context: under ``authorizer.lambda`` (payload 2.0) or ``authorizer`` itself (1.0)."""
    found = (event.get("requestContext") or {}).get("authorizer") or {}
    inner = found.get("lambda") if isinstance(found, Mapping) else None
    return inner if isinstance(inner, Mapping) else found if isinstance(found, Mapping) else {}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def caller(app: APIGatewayRestResolver | Router) -> Caller:
    """The caller's key, checked: a known key (else ``403 FORBIDDEN``), within its rate limit (else ``429
    RATE_LIMITED`` with ``Retry-After``), and a ``read`` key only reading (else ``403 FORBIDDEN``)."""
    event = cast(APIGatewayProxyEvent, app.current_event)  # a Router's event is typed as the base class
    # The caller's key value is masked in every log line from now on (functions/redaction.py).
    register_secret(event.headers.get("x-api-key"))
    context = authorizer_context(event.raw_event)
    tenant = str(context.get("tenant") or "")
    if not tenant:
        # The same body as API Gateway's own refusals had (and the local gateway's for a missing key).
        raise Forbidden("Forbidden")
    found = Caller(
        tenant=tenant,
        key_id=str(context.get("keyId") or ""),
        scope=str(context.get("scope") or "full"),
        rate_limit=_number(context.get("rateLimit")),
        burst_limit=int(_number(context.get("burstLimit"))),
    )
    wait = key_rate_limiter().retry_after(found.key_id, found.rate_limit, found.burst_limit)
    if wait is not None:
        raise RateLimited(f"this key is over its rate limit ({found.rate_limit:g} requests/s); retry in {wait} s", wait)
    if found.scope != "full" and event.http_method.upper() not in READ_METHODS:
        raise Forbidden(f"this key's scope is {shown(found.scope)}: it may only read (GET); writes need a full key")
    return found


def caller_tenant(app: APIGatewayRestResolver | Router) -> str:
    return caller(app).tenant


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods declared for ``path`` (empty when no route has this path)."""
    # A static path (/jobs/batch) is its own resource, even where a dynamic one (/jobs/{job_id}) also matches it.
    static = {route.method for route in app._static_routes if route.rule.match(path)}
    return sorted(static or {route.method for route in app._dynamic_routes if route.rule.match(path)})


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return json_response(exc.status_code, exc.to_body(), headers=headers)

    @app.exception_handler(StorageError)
    def _storage_error(exc: StorageError) -> Response[str]:
        logger.exception("storage unavailable")
        return _api_error(Unavailable("the job store is unavailable; try again"))

    @app.exception_handler(ConcurrentUpdate)
    def _conflict(exc: ConcurrentUpdate) -> Response[str]:
        return _api_error(Conflict(str(exc)))

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        method, path = app.current_event.http_method, app.current_event.path
        allowed = allowed_methods(app, app._remove_prefix(path))
        if allowed:
            error = MethodNotAllowed(f"{shown(method)} is not allowed on this path; allowed: {', '.join(allowed)}")
            return json_response(error.status_code, error.to_body(), headers={"Allow": ", ".join(allowed)})
        return _api_error(NotFound(f"no route {shown(method)} {shown(path)}"))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return json_response(500, {"error": "internal error", "code": "INTERNAL"})
