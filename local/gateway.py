"""A local stand-in for API Gateway (HTTP API, Lambda proxy with payload format 1.0): HTTP in, proxy event to the
handler, response out.

Keys are checked the way the deployed API checks them: ``GET`` of ``/health``, the dashboard, ``/openapi.json`` and
``/swagger`` is open; every other request runs the Lambda authorizer (functions/handlers/authorizer.py) for its
``x-api-key``, whose answer is cached per key value for the authorizer's TTL, as API Gateway caches it, and handed to
the API function in ``requestContext.authorizer``. One difference, on purpose: a request without the header is
answered ``403 FORBIDDEN`` in the API's shape here, where API Gateway answers ``401 {"message": "Unauthorized"}``
itself (docs/aws-vs-local.md). The gateway's own errors are in the API's error shape. The default stage has no
path prefix.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from functions.handlers import authorizer
from functions.settings import Settings
from local.aws import ACCOUNT_ID
from local.lambda_context import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# (method, path) callable without a key, as in infra/constructs/api.py; a path ending in "/" opens what is below it.
OPEN_ROUTES = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/"),
        ("GET", "/openapi.json"),
        ("GET", "/swagger"),
        ("GET", "/assets/"),
    }
)
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# Lambda refuses a synchronous invoke whose event (the request serialised as JSON) is 6 MB or more. API Gateway then
# answers 500 (INTEGRATION_FAILURE, rendered by the DEFAULT_5XX gateway response): reproduced here, so that a body
# between this and MAX_REQUEST_BYTES fails locally as it does on AWS.
LAMBDA_MAX_REQUEST_BYTES = 6 * 1024 * 1024
STAGE = "$default"
# Connections waiting to be accepted (socketserver's default is 5: a burst of 50 clients saw resets).
LISTEN_BACKLOG = 1024
# How long a client may leave the gateway waiting for the rest of a request's body once its headers are in.
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
# How long a connection may wait for its next request (keep-alive) or take to send its headers.
IDLE_TIMEOUT_SECONDS = 60.0
# The gateway's own refusals (the request never reached the API), in the API's error shape.
GATEWAY_ERROR_CODES = {
    400: "BAD_REQUEST",
    408: "REQUEST_TIMEOUT",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    431: "HEADERS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
    505: "HTTP_VERSION_NOT_SUPPORTED",
}


class AuthorizerCache:
    """The authorizer's answers by key value, kept ``ttl_seconds`` as API Gateway keeps them (a revoked or rotated
    key works until its cached answer expires, locally as on AWS)."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._answers: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def context(self, value: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._answers.get(value)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        context = authorize(value)
        with self._lock:
            self._answers[value] = (now, context)
        return context


def authorize(value: str) -> dict[str, Any]:
    """The authorizer's context for a key value, as API Gateway passes it on (nothing when it refuses)."""
    answer = authorizer.handler(authorizer_event(value), LocalContext("authorizer", 10))
    return dict(answer.get("context") or {}) if answer.get("isAuthorized") else {}


def authorizer_event(value: str) -> dict[str, Any]:
    """What API Gateway sends the authorizer (payload format 2.0, identity source ``$request.header.x-api-key``)."""
    return {"version": "2.0", "type": "REQUEST", "identitySource": [value], "headers": {"x-api-key": value}}


def exceeds_lambda_request_limit(event: dict[str, Any]) -> bool:
    """Whether Lambda would refuse to be invoked with ``event``: its JSON, where the body's quotes and backslashes
    are escaped again, so a body of heavily quoted JSON under the API's 5 MiB limit may still exceed it."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()) >= LAMBDA_MAX_REQUEST_BYTES


def is_open(method: str, path: str) -> bool:
    """Whether ``method path`` needs no key: an exact open route, or a plain path below an open prefix."""
    if (method, path) in OPEN_ROUTES and (path == "/" or not path.endswith("/")):
        return True
    segments = path.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments):  # like API Gateway's {proxy+}: no empty segments
        return False
    return any(
        m == method and prefix != "/" and prefix.endswith("/") and path.startswith(prefix) and path != prefix
        for m, prefix in OPEN_ROUTES
    )


def build_event(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    authorizer_context: dict[str, Any] | None,
    source_ip: str,
) -> dict[str, Any]:
    split = urlsplit(raw_path)
    query_pairs = parse_qsl(split.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for name, value in query_pairs:
        multi_query.setdefault(name, []).append(value)
    try:
        text: str | None = body.decode("utf-8") if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    path = split.path or "/"
    return {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            # As behind a custom domain: no stage prefix (Powertools takes a "/local" prefix for the base path).
            "path": path,
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("user-agent")},
            # The Lambda authorizer's context (payload format 1.0 hands it over as the REST API does).
            "authorizer": authorizer_context,
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


class GatewayServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def content_length(value: str | None) -> int | None:
    """The request's declared body length; None when it is not a plain non-negative number."""
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else None


class LocalGateway:
    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        timeout_seconds: int,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    ) -> None:
        self._handler = handler
        self._authorizer = AuthorizerCache(Settings.from_env().authorizer_cache_seconds)
        self._timeout_seconds = timeout_seconds
        self._read_timeout_seconds = read_timeout_seconds
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients of the real gateway get
            # A response goes out as two writes (head, then body): with Nagle's algorithm on, the body waited for
            # the client's delayed ACK of the head, ~40 ms on every keep-alive request.
            disable_nagle_algorithm = True
            # A socket timeout: a client that stops sending (or idles on keep-alive) frees its thread.
            timeout = IDLE_TIMEOUT_SECONDS

            def __getattr__(self, name: str) -> Any:
                # Every method of a well-formed request goes to the API, which answers 405 for one it does not
                # declare (http.server would answer 501 HTML for any method without a do_<METHOD>).
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def _serve(self) -> None:
                gateway.serve(self)

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # http.server's own refusals (bad request line, long URL or headers, HTTP version) as JSON.
                gateway.refuse(self, code, message or self.responses.get(code, ("Error",))[0])

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = GatewayServer((host, port), RequestHandler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def refuse(self, request: BaseHTTPRequestHandler, status: int, message: str) -> None:
        """Answer a request the gateway will not pass on, and close the connection (what follows on it may be
        the rest of the refused request)."""
        request.close_connection = True
        if not getattr(request, "command", None) or request.request_version == "HTTP/0.9":
            request.command = request.command or ""
            request.request_version = "HTTP/1.1"  # a status line and headers even when the request line was bad
        code = GATEWAY_ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "UNAVAILABLE")
        self._reply(request, status, {"error": message, "code": code}, {"Connection": "close"})

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        method = request.command
        if not request.path.startswith("/"):  # CONNECT host:port, OPTIONS *, a proxy's absolute URL
            self.refuse(request, 501, f"{method} {request.path[:100]} is not served here: the target must be a path")
            return
        if "transfer-encoding" in request.headers:
            self.refuse(request, 411, "send the body with a Content-Length (chunked bodies are not accepted)")
            return
        length = content_length(request.headers.get("content-length"))
        if length is None:
            request.close_connection = True
            error = {"error": "Content-Length must be a non-negative whole number", "code": "INVALID_BODY"}
            self._reply(request, 400, error, {"Connection": "close"})
            return
        if length > MAX_REQUEST_BYTES:
            self.refuse(request, 413, "Request Too Long")
            return
        request.connection.settimeout(self._read_timeout_seconds)
        try:
            body = request.rfile.read(length) if length else b""
        except TimeoutError:
            wait = f"{self._read_timeout_seconds:g} s"
            self.refuse(request, 408, f"the {length} bytes Content-Length declared did not arrive within {wait}")
            return
        finally:
            request.connection.settimeout(IDLE_TIMEOUT_SECONDS)
        if len(body) < length:  # the client closed its side early
            self.refuse(request, 400, f"the body ended after {len(body)} of the {length} bytes Content-Length declared")
            return
        headers = {name.lower(): value for name, value in request.headers.items()}
        path = urlsplit(request.path).path
        api_key = headers.get("x-api-key")
        context: dict[str, Any] | None = None
        if not is_open(method, path):
            if not api_key:  # API Gateway answers this itself, before the authorizer (401 there, see the docstring)
                self._reply(request, 403, {"error": "Forbidden", "code": "FORBIDDEN"}, {})
                return
            try:
                context = self._authorizer.context(api_key)
            except Exception:  # noqa: BLE001 - API Gateway answers 500 when the authorizer fails (and caches nothing)
                self._reply(request, 500, {"error": "Internal server error", "code": "UNAVAILABLE"}, {})
                return
        event = build_event(method, request.path, headers, body, context, request.client_address[0])
        if exceeds_lambda_request_limit(event):
            self._reply(request, 500, {"error": "Internal server error", "code": "UNAVAILABLE"}, {})
            return
        try:
            response = self._handler(event, LocalContext("api", self._timeout_seconds))
        except Exception:  # noqa: BLE001 - the real gateway answers 502 when the function itself crashes
            self._reply(request, 502, {"error": "Internal server error", "code": "UNAVAILABLE"}, {})
            return
        out_headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        self._send(request, int(response.get("statusCode", 200)), data, out_headers)

    def _reply(
        self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._send(request, status, data, {"Content-Type": "application/json", **headers})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]) -> None:
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                request.send_header(name, value)
        if headers.get("Connection") == "close":
            request.send_header("Connection", "close")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
