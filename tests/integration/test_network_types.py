"""webhook-delivery, fetch and crawl-website over real sockets to a local HTTP server, with moto S3/Secrets Manager.

The handlers are called directly with a ``JobContext``. The server runs on 127.0.0.1, admitted by the allowlist
``127.0.0.0/8`` as in ``make run``; the SSRF tests use an EMPTY allowlist (as on AWS) against the same server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.adapters import net
from functions.dal import secrets as secrets_dal
from functions.logic.job_types import JobContext
from functions.logic.job_types.crawl import CrawlPayload, crawl_website
from functions.logic.job_types.fetch import FetchPayload, fetch
from functions.logic.job_types.webhook import WebhookPayload, tenant_secret, verify_signature, webhook_delivery
from functions.models.errors import PermanentJobError, RetryableJobError
from functions.settings import Settings

LOOPBACK = "127.0.0.0/8,::1/128"
PUBLIC_IP = "93.184.216.34"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# path -> (status, headers, body) or a callable writing the response itself
Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class LocalServer:
    host: str
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


def _serve(server_state: LocalServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server_state.received.append(
                Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            route = server_state.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
            if callable(route):
                route(self)
                return
            status, headers, content = route
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer((server_state.host, 0), Handler)
    httpd.daemon_threads = True
    server_state.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


@pytest.fixture
def server() -> Iterator[LocalServer]:
    state = LocalServer("127.0.0.1", 0)
    httpd = _serve(state)
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def aws() -> Iterator[Callable[[str], Any]]:
    secrets_dal.clear_cache()
    with mock_aws(config={"core": {"reset_boto3_session": False}}):

        @cache
        def client(service: str) -> Any:
            return boto3.client(service, region_name="us-east-1")

        client("s3").create_bucket(Bucket=Settings().files_bucket)
        yield client
    secrets_dal.clear_cache()


def context(aws: Callable[[str], Any], allowlist: str = LOOPBACK, **settings: Any) -> JobContext:
    return JobContext(
        job_id=str(uuid.uuid4()),
        tenant=f"t-{uuid.uuid4().hex[:8]}",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(outbound_allowlist=allowlist, crawl_delay_seconds=0.0, **settings),
        client=aws,
    )


def slow(seconds: float) -> Callable[[BaseHTTPRequestHandler], None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        try:
            handler.send_response(200)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass

    return respond


def trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.1 s: each read is quick, the whole is not."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    try:
        for _ in range(100):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


# --- webhook-delivery ---


def test_a_webhook_is_delivered_signed_with_the_tenants_secret(server: LocalServer, aws: Any) -> None:
    # Given a receiver answering 204
    server.routes["/hooks/in"] = (204, {}, b"")
    ctx = context(aws)
    payload = WebhookPayload(url=server.url("/hooks/in"), method="PATCH", headers={"X-Tag": "t1"}, body={"n": 1})
    # When
    result = webhook_delivery(payload, ctx)
    # Then
    assert result == {"status": 204, "attempt": 1}
    [request] = server.received
    assert request.method == "PATCH" and request.path == "/hooks/in" and request.body == b'{"n":1}'
    assert request.headers["content-type"] == "application/json" and request.headers["x-tag"] == "t1"
    assert request.headers["idempotency-key"] == ctx.job_id
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    # and the signature verifies with the secret stored in Secrets Manager for this tenant
    secret = aws("secretsmanager").get_secret_value(SecretId=f"jobs/webhook-signing/{ctx.tenant}")["SecretString"]
    assert verify_signature(secret, request.headers["x-jobs-signature"], request.body)
    assert request.headers["x-jobs-signature"].startswith(f"t={request.headers['x-jobs-timestamp']},v1=")


def test_every_attempt_uses_the_same_secret_and_idempotency_key(server: LocalServer, aws: Any) -> None:
    server.routes["/h"] = (200, {}, b"thanks")
    ctx = context(aws)
    payload = WebhookPayload(url=server.url("/h"), body=["x"])
    webhook_delivery(payload, ctx)
    secrets_dal.clear_cache()  # another container
    webhook_delivery(payload, JobContext(**{**ctx.__dict__, "attempt": 2}))
    first, second = server.received
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == ctx.job_id
    assert second.headers["x-jobs-attempt"] == "2"
    secret = aws("secretsmanager").get_secret_value(SecretId=f"jobs/webhook-signing/{ctx.tenant}")["SecretString"]
    assert all(verify_signature(secret, r.headers["x-jobs-signature"], r.body) for r in server.received)


@pytest.mark.parametrize(
    ("route", "expected", "message"),
    [
        ((500, {}, b"boom"), RetryableJobError, "HTTP 500"),
        ((429, {"Retry-After": "1"}, b""), RetryableJobError, "HTTP 429"),
        ((404, {}, b"no such hook"), PermanentJobError, "HTTP 404 Not Found: no such hook"),
        ((302, {"Location": "/elsewhere"}, b""), PermanentJobError, "redirects are not followed"),
    ],
)
def test_webhook_failures_are_classified(
    server: LocalServer, aws: Any, route: Any, expected: type[Exception], message: str
) -> None:
    server.routes["/h"] = route
    with pytest.raises(expected, match=message):
        webhook_delivery(WebhookPayload(url=server.url("/h"), body={}), context(aws))


def test_a_webhook_timeout_is_retryable(server: LocalServer, aws: Any) -> None:
    # Given a receiver that answers after 3 s, and a 0.3 s HTTP timeout; the tenant's signing secret exists already
    # (its creation, and the first Secrets Manager client's, take most of a second on a loaded machine: not timed)
    server.routes["/slow"] = slow(3.0)
    ctx = context(aws, http_timeout_seconds=0.3)
    tenant_secret(ctx)
    # When a webhook is delivered to it
    started = time.monotonic()
    with pytest.raises(RetryableJobError, match="did not answer in time"):
        webhook_delivery(WebhookPayload(url=server.url("/slow"), body={}), ctx)
    # Then it gave up at the timeout, not when the answer came (2.2 s of slack for a loaded machine)
    assert time.monotonic() - started < 2.5


def test_a_refused_connection_is_retryable(aws: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RetryableJobError, match="could not connect"):
        webhook_delivery(WebhookPayload(url=f"http://127.0.0.1:{port}/", body={}), context(aws))


# --- fetch ---


def test_fetch_stores_the_body_in_s3(server: LocalServer, aws: Any) -> None:
    # Given
    content = bytes(range(256)) * 40
    server.routes["/file.bin"] = (200, {"Content-Type": "application/x-demo"}, content)
    ctx = context(aws)
    # When
    result = fetch(FetchPayload(url=server.url("/file.bin")), ctx)
    # Then
    assert result == {
        "key": f"fetched/{ctx.job_id}",
        "contentType": "application/x-demo",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "status": 200,
        "url": server.url("/file.bin"),
    }
    stored = aws("s3").get_object(Bucket=Settings().files_bucket, Key=result["key"])
    assert stored["Body"].read() == content and stored["ContentType"] == "application/x-demo"


def test_fetch_follows_redirects_and_reports_the_final_url(server: LocalServer, aws: Any) -> None:
    server.routes["/old"] = (301, {"Location": "/new"}, b"")
    server.routes["/new"] = (200, {"Content-Type": "text/plain"}, b"moved")
    result = fetch(FetchPayload(url=server.url("/old")), context(aws))
    assert result["url"] == server.url("/new") and result["size"] == 5


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_permanent(server: LocalServer, aws: Any, declared: bool) -> None:
    def chunked(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: the limit is found while reading
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for _ in range(3):
                handler.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading at its limit

    server.routes["/big"] = (200, {}, b"x" * 3000) if declared else chunked
    ctx = context(aws)
    with pytest.raises(PermanentJobError, match=r"fetch failed: response .* limit of 1000"):
        fetch(FetchPayload(url=server.url("/big"), maxBytes=1000), ctx)
    assert aws("s3").list_objects_v2(Bucket=Settings().files_bucket).get("KeyCount") == 0


def test_a_slowly_trickled_body_hits_the_total_deadline(server: LocalServer, aws: Any) -> None:
    server.routes["/trickle"] = trickle
    started = time.monotonic()
    with pytest.raises(RetryableJobError, match=r"did not answer in time|timed out"):
        fetch(FetchPayload(url=server.url("/trickle")), context(aws, http_timeout_seconds=0.5))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("status", "expected"), [(404, PermanentJobError), (503, RetryableJobError)])
def test_fetch_statuses_are_classified(server: LocalServer, aws: Any, status: int, expected: type[Exception]) -> None:
    server.routes["/x"] = (status, {}, b"")
    with pytest.raises(expected, match=f"HTTP {status}"):
        fetch(FetchPayload(url=server.url("/x")), context(aws))


# --- crawl-website ---


def page(title: str, *hrefs: str) -> tuple[int, dict[str, str], bytes]:
    links = "".join(f'<a href="{href}">link</a>' for href in hrefs)
    body = f"<!doctype html><html><head><title>{title}</title></head><body>{links}</body></html>"
    return 200, {"Content-Type": "text/html; charset=utf-8"}, body.encode()


def test_a_small_site_is_crawled_breadth_first_and_stored(server: LocalServer, aws: Any) -> None:
    # Given a six-page site whose robots.txt disallows /private/, with an off-origin link and a non-HTML file
    server.routes.update(
        {
            "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"),
            "/": page("Home", "/about", "/blog/", "/private/keys", "https://example.org/elsewhere", "/data.txt"),
            "/about": page("About", "/", "/team#people"),
            "/blog/": page("Blog", "post-1", "./post-2?x=1", "../about"),
            "/team": page("Team"),
            "/blog/post-1": page("Post 1", "/blog/"),
            "/blog/post-2?x=1": page("Post 2"),
            "/private/keys": page("Keys"),
            "/data.txt": (200, {"Content-Type": "text/plain"}, b"plain"),
        }
    )
    ctx = context(aws)
    # When
    result = crawl_website(CrawlPayload(url=server.url("/")), ctx)
    # Then
    base = server.url("")
    assert [(p["url"].removeprefix(base), p["title"]) for p in result["pages"]] == [
        ("/", "Home"),
        ("/about", "About"),
        ("/blog/", "Blog"),
        ("/data.txt", None),
        ("/team", "Team"),
        ("/blog/post-1", "Post 1"),
        ("/blog/post-2?x=1", "Post 2"),
    ]
    assert result["count"] == 7 and result["stored"] == 6
    assert "/private/keys" not in [r.path for r in server.received]
    assert {"url": base + "/private/keys", "reason": "disallowed by robots.txt"} in result["skipped"]
    assert "https://example.org/elsewhere" in result["links"]
    assert not any("example.org" in r.headers.get("host", "") for r in server.received)
    assert result["pages"][0]["links"] == 5
    assert all(r.headers["user-agent"] == "jobs-crawler" for r in server.received)
    # and the pages and the manifest are in S3
    s3 = aws("s3")
    bucket = Settings().files_bucket
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"crawls/{ctx.job_id}/")["Contents"])
    assert keys == sorted([f"crawls/{ctx.job_id}/{n}.html" for n in range(1, 7)] + [result["key"]])
    about = s3.get_object(Bucket=bucket, Key=result["pages"][1]["key"])
    assert b"<title>About</title>" in about["Body"].read() and about["ContentType"].startswith("text/html")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"crawls/{ctx.job_id}/manifest.json")["Body"].read())
    assert manifest["pages"] == result["pages"] and manifest["count"] == 7


def test_max_pages_stops_the_crawl(server: LocalServer, aws: Any) -> None:
    server.routes.update({"/": page("Home", "/1", "/2", "/3"), "/1": page("1"), "/2": page("2"), "/3": page("3")})
    result = crawl_website(CrawlPayload(url=server.url("/"), maxPages=2), context(aws))
    assert [p["title"] for p in result["pages"]] == ["Home", "1"]


# --- SSRF: an empty allowlist, as on AWS ---


def test_a_loopback_ip_is_refused_for_every_type(server: LocalServer, aws: Any) -> None:
    server.routes["/"] = page("Home")
    ctx = context(aws, allowlist="")
    for run in (
        lambda: webhook_delivery(WebhookPayload(url=server.url("/"), body={}), ctx),
        lambda: fetch(FetchPayload(url=server.url("/")), ctx),
        lambda: crawl_website(CrawlPayload(url=server.url("/")), ctx),
    ):
        with pytest.raises(PermanentJobError, match=r"refused to connect to 127\.0\.0\.1: loopback address"):
            run()
    assert server.received == []


def test_a_name_resolving_to_loopback_is_refused(server: LocalServer, aws: Any) -> None:
    server.routes["/"] = page("Home")
    ctx = context(aws, allowlist="")
    with pytest.raises(PermanentJobError, match=r"localhost \(resolves to .*\): loopback address"):
        fetch(FetchPayload(url=server.url("/", host="localhost")), ctx)
    with pytest.raises(PermanentJobError, match="loopback address"):
        webhook_delivery(WebhookPayload(url=server.url("/", host="localhost"), body={}), ctx)
    assert server.received == []


def test_a_redirect_from_a_public_host_to_loopback_is_refused(
    server: LocalServer, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given "public.test" resolving to a public address whose traffic this test routes to the local server
    # (standing in for an attacker's public host), which redirects to a loopback URL
    server.routes["/go"] = (302, {"Location": server.url("/secret")}, b"")
    server.routes["/secret"] = (200, {}, b"internal")
    real_getaddrinfo, real_open = socket.getaddrinfo, net._open_socket

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "public.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, int(port)))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def open_socket(target: tuple[Any, ...], timeout: float | None) -> socket.socket:
        if target[1][0] == PUBLIC_IP:
            return real_open((socket.AF_INET, ("127.0.0.1", server.port)), timeout)
        return real_open(target, timeout)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(net, "_open_socket", open_socket)
    ctx = context(aws, allowlist="")
    # When / Then: the first hop is made, the redirect is refused before connecting
    with pytest.raises(PermanentJobError, match=r"refused to connect to 127\.0\.0\.1: loopback"):
        fetch(FetchPayload(url=f"http://public.test:{server.port}/go"), ctx)
    assert [r.path for r in server.received] == ["/go"]
    assert server.received[0].headers["host"] == f"public.test:{server.port}"
    # and a crawl that finds the same link skips it instead of failing
    server.routes["/"] = page("Home", "/go")
    server.received.clear()
    result = crawl_website(CrawlPayload(url=f"http://public.test:{server.port}/"), ctx)
    assert [p["title"] for p in result["pages"]] == ["Home"]
    assert "loopback" in result["skipped"][0]["reason"]
    assert "/secret" not in [r.path for r in server.received]
