"""HTTP plumbing for the API function: the request body, the caller's tenant, and domain errors as responses."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers.runtime import logger, runtime, tenants
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


def caller_tenant(app: APIGatewayRestResolver | Router) -> str:
    """API Gateway has validated the key (usage plan); the key's tag says whose it is."""
    event = cast(APIGatewayProxyEvent, app.current_event)  # a Router's event is typed as the base class
    # The caller's key value is masked in every log line from now on (functions/redaction.py).
    register_secret(event.headers.get("x-api-key"))
    identity = event.request_context.identity
    key_id = identity.api_key_id if identity else None
    tenant = tenants().tenant_for(key_id) if key_id else None
    if tenant is None:
        raise Forbidden("a valid x-api-key header is required")
    return tenant


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods declared for ``path`` (empty when no route has this path)."""
    # A static path (/jobs/batch) is its own resource, even where a dynamic one (/jobs/{job_id}) also matches it.
    static = {route.method for route in app._static_routes if route.rule.match(path)}
    return sorted(static or {route.method for route in app._dynamic_routes if route.rule.match(path)})


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        return json_response(exc.status_code, exc.to_body())

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
