"""A local stand-in for API Gateway (REST, Lambda proxy): HTTP in, proxy event to the handler, response out.

It enforces API keys the way the deployed API does (``GET`` of ``/health``, the dashboard, ``/openapi.json`` and
``/swagger`` is open; everything else needs a known, enabled ``x-api-key``), and answers its own errors in the
same shape as the deployed gateway responses. The events look like API Gateway's behind a custom domain: the
path has no stage prefix.
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

import boto3

from local.aws import ACCOUNT_ID, stored_key_value
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
STAGE = "local"


class ApiKeyCache:
    """Key value -> key id, read from the API Gateway (moto) keys; re-read on a miss at most once a second."""

    def __init__(self) -> None:
        self._apigateway = boto3.client("apigateway")
        self._by_value: dict[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def key_id(self, value: str) -> str | None:
        candidates = (value, stored_key_value(value))
        for candidate in candidates:
            if candidate in self._by_value:
                return self._by_value[candidate]
        with self._lock:
            if time.monotonic() - self._loaded_at > 1.0:
                self._reload()
        return next((self._by_value[c] for c in candidates if c in self._by_value), None)

    def _reload(self) -> None:
        keys: dict[str, str] = {}
        paginator = self._apigateway.get_paginator("get_api_keys")
        for page in paginator.paginate(includeValues=True):
            for key in page.get("items", []):
                if key.get("enabled", True) and "value" in key:
                    keys[key["value"]] = key["id"]
        self._by_value = keys
        self._loaded_at = time.monotonic()


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
    key_id: str | None,
    api_key: str | None,
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
            "identity": {
                "sourceIp": source_ip,
                "apiKey": api_key,
                "apiKeyId": key_id,
                "userAgent": headers.get("user-agent"),
            },
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


class LocalGateway:
    def __init__(self, handler: Handler, host: str, port: int, timeout_seconds: int) -> None:
        self._handler = handler
        self._keys = ApiKeyCache()
        self._timeout_seconds = timeout_seconds
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients of the real gateway get
            # A response goes out as two writes (head, then body): with Nagle's algorithm on, the body waited for
            # the client's delayed ACK of the head, ~40 ms on every keep-alive request.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                gateway.serve(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer((host, port), RequestHandler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        method = request.command
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            request.close_connection = True
            self._reply(request, 413, {"error": "Request Too Long", "code": "PAYLOAD_TOO_LARGE"}, {})
            return
        body = request.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in request.headers.items()}
        path = urlsplit(request.path).path
        api_key = headers.get("x-api-key")
        key_id = self._keys.key_id(api_key) if api_key else None
        if key_id is None and not is_open(method, path):
            self._reply(request, 403, {"error": "Forbidden", "code": "FORBIDDEN"}, {})
            return
        event = build_event(method, request.path, headers, body, key_id, api_key, request.client_address[0])
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
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
