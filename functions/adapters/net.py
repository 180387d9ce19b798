"""Outbound HTTP for jobs (webhook-delivery, fetch, crawl-website) that cannot be pointed at the inside.

Every request, and every redirect hop, goes through the same steps:

1. the URL must be ``http``/``https`` with a host and no credentials;
2. the host is resolved once with ``socket.getaddrinfo``; if **any** resolved address is loopback, private,
   link-local (169.254.169.254, fe80::/10), multicast, reserved, unspecified, shared (100.64/10) or otherwise not
   globally routable — including IPv6 forms that embed such an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64,
   Teredo) — the request is refused with ``BlockedAddress``, unless the address is inside one of the allowlisted
   CIDRs (``Settings.outbound_allowlist``; empty on AWS, loopback for ``make run`` and the tests);
3. the connection is made to the vetted address itself (no second lookup, so DNS rebinding cannot swap it), with
   the original ``Host`` header and, for https, SNI and certificate verification against the original host name;
4. redirects are followed by hand (at most ``max_redirects``), each hop vetted again from step 1;
5. the whole request (all hops, connect, headers, body) has one deadline, and the body is read in chunks and
   abandoned as soon as it exceeds ``max_bytes``.

Standard library only. Errors are ``NetError`` subclasses, each saying whether retrying can help;
``job_failure()`` turns one into the ``RetryableJobError``/``PermanentJobError`` a job handler raises.

One module although it is long: the URL checks, the address policy and the pinned connections are one security
boundary, and a reviewer should be able to read it top to bottom in one place.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError
from functions.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

MAX_URL_LENGTH = 2048
DEFAULT_MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "jobs/1.0"
_CHUNK = 64 * 1024
# Headers a caller may not set: the client owns framing, the connection and the target host.
FORBIDDEN_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
# Dropped when a redirect leaves the origin, so credentials meant for one host never reach another.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


# --- errors ---


class NetError(Exception):
    """An outbound request did not produce a usable response."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidUrl(NetError):
    """Not an http(s) URL with a host (or a redirect to one)."""


class BlockedAddress(NetError):
    """The host resolves to an address outbound requests may not reach (see the module docstring)."""


class TooManyRedirects(NetError):
    """More redirects than allowed."""


class ResponseTooLarge(NetError):
    """The body is larger than the limit."""


class RequestTimeout(NetError):
    """The request did not finish within its deadline."""

    retryable = True


class ConnectionFailed(NetError):
    """DNS failure, refused or reset connection, TLS failure, malformed response: usually transient."""

    retryable = True


def job_failure(exc: NetError, what: str = "request") -> JobFailure:
    """The job error for a network error: permanent for refusals and limits, retryable for transient trouble."""
    message = f"{what} failed: {exc.message}"
    return RetryableJobError(message) if exc.retryable else PermanentJobError(message)


def status_failure(status: int, reason: str = "", what: str = "request", detail: str = "") -> JobFailure:
    """The job error for an unsuccessful HTTP status: 408, 429 and 5xx retry; everything else is permanent."""
    message = f"{what} answered HTTP {status}{' ' + reason if reason else ''}"
    if detail:
        message += f": {detail}"
    return RetryableJobError(message) if is_retryable_status(status) else PermanentJobError(message)


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


# --- URLs ---


def check_url(url: str) -> SplitResult:
    """Parse an absolute http(s) URL with a host; raise ``InvalidUrl`` otherwise."""
    if not isinstance(url, str) or not url:
        raise InvalidUrl("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise InvalidUrl("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"URL is malformed: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidUrl(f"URL scheme must be http or https, not '{parts.scheme or '(none)'}'")
    if not parts.hostname:
        raise InvalidUrl("URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("URL must not contain credentials (send them in a header)")
    if port == 0:
        raise InvalidUrl("URL port must be 1-65535")
    _ascii_host(parts.hostname)
    return parts


def validate_http_url(value: str) -> str:
    """Pydantic-friendly check of a payload URL (raises ``ValueError``); returns it stripped."""
    value = value.strip()
    try:
        check_url(value)
    except InvalidUrl as exc:
        raise ValueError(exc.message) from exc
    return value


def _ascii_host(hostname: str) -> str:
    try:
        return hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
    except UnicodeError as exc:
        raise InvalidUrl(f"URL host '{hostname}' is not a valid host name") from exc


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with defaults filled, for same-origin comparisons."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _default_port(scheme)


def _request_target(parts: SplitResult) -> str:
    # Existing %-escapes are kept; spaces and non-ASCII are escaped so the request line stays valid ASCII.
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return path + (f"?{query}" if query else "")


# --- address policy ---


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, IPv4-compatible, 6to4, Teredo client)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    translated = _translated_ipv4(address)
    if translated is not None:
        return translated
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """For the IPv6 forms that *are* an IPv4 address on the wire (mapped, NAT64, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in network for network in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1  # ::, ::1 are themselves
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why outbound requests may not reach this address (ignoring any allowlist), or None if they may."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        inner = refusal_reason(embedded)
        if inner is not None:
            return f"{inner} (embedded in an IPv6 address)"
        if isinstance(address, ipaddress.IPv6Address) and _translated_ipv4(address) is not None:
            return None  # ::ffff:8.8.8.8 or 64:ff9b::808:808 (DNS64) is 8.8.8.8
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    """Which resolved addresses outbound requests may connect to."""

    allowlist: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, cidrs: str | Iterable[str]) -> OutboundPolicy:
        items = cidrs.split(",") if isinstance(cidrs, str) else list(cidrs)
        networks = []
        for item in items:
            if item.strip():
                try:
                    networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError as exc:
                    raise ValueError(f"outbound allowlist entry '{item.strip()}' is not a CIDR") from exc
        return cls(tuple(networks))

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls.parse(settings.outbound_allowlist)

    def allowlisted(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # ::ffff:a.b.c.d is a.b.c.d: the IPv4 allowlist applies to it
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.allowlist
        )

    def check(self, host: str, address: IPAddress) -> None:
        """Raise ``BlockedAddress`` unless outbound requests may connect to ``address`` (resolved from ``host``)."""
        if self.allowlisted(address):
            return
        reason = refusal_reason(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} (resolves to {address})"
            raise BlockedAddress(
                f"refused to connect to {shown}: {reason} address; outbound requests may only reach public "
                "addresses (allowlist: JOBS_OUTBOUND_ALLOWLIST)"
            )


# --- the client ---


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    # Lower-case names; repeated headers joined with ", ".
    headers: Mapping[str, str]
    body: bytes
    # The URL that answered, after redirects.
    url: str
    # True when ``truncate=True`` and the body was cut at ``max_bytes``.
    truncated: bool = False
    redirects: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for param in self.content_type.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"').lower()
        return None


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise RequestTimeout("timed out")
        return left

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


@dataclass(frozen=True)
class _Hop:
    """One request of a redirect chain, as ``_once`` sends it and ``_exchange`` reads its answer."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    deadline: _Deadline
    limit: int
    truncate: bool


def _open_socket(target: tuple[Any, ...], timeout: float | None) -> socket.socket:
    family, address = target
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an already vetted socket address; ``host`` stays the name (Host header)."""

    def __init__(self, host: str, port: int, target: tuple[Any, ...], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._target = target

    def connect(self) -> None:
        self.sock = _open_socket(self._target, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As ``_PinnedHTTPConnection``, with TLS: SNI and certificate checks use the host name, not the address."""

    def __init__(self, host: str, port: int, target: tuple[Any, ...], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self._target = target

    def connect(self) -> None:
        sock = _open_socket(self._target, self.timeout)
        try:
            self.sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclass
class SafeHttpClient:
    """Outbound HTTP with the address policy, one deadline and a size limit (see the module docstring)."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    timeout: float = 10.0
    max_bytes: int = 10 * 1024 * 1024
    user_agent: str = USER_AGENT
    # ``socket.getaddrinfo`` by default (looked up on each call, so tests can monkeypatch it).
    resolver: Resolver | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SafeHttpClient:
        values: dict[str, Any] = {
            "policy": OutboundPolicy.from_settings(settings),
            "timeout": settings.http_timeout_seconds,
            "max_bytes": settings.fetch_max_bytes,
        }
        values.update(overrides)
        return cls(**values)

    def resolve(self, url: str) -> list[tuple[Any, ...]]:
        """Vet a URL's host: its (family, sockaddr) targets, all of them allowed; ``BlockedAddress`` otherwise."""
        parts = check_url(url)
        return self._resolve(parts)

    def _resolve(self, parts: SplitResult) -> list[tuple[Any, ...]]:
        assert parts.hostname is not None
        host = _ascii_host(parts.hostname)
        port = parts.port or _default_port(parts.scheme.lower())
        resolver = self.resolver or socket.getaddrinfo
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ConnectionFailed(f"could not resolve {host}: {exc}") from exc
        targets: list[tuple[Any, ...]] = []
        for family, _type, _proto, _canonname, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.policy.check(host, address)  # any refused address refuses the host: no mixing public and private
            if (family, sockaddr) not in targets:
                targets.append((family, sockaddr))
        if not targets:
            raise ConnectionFailed(f"{host} has no IPv4 or IPv6 address")
        return targets

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        truncate: bool = False,
    ) -> Response:
        """Send a request; follow up to ``max_redirects`` redirects (0: return the 3xx itself).

        Over ``max_bytes``: ``ResponseTooLarge``, or with ``truncate=True`` the first ``max_bytes`` bytes.
        """
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        limit = self.max_bytes if max_bytes is None else max_bytes
        method = method.upper()
        current_headers = {"User-Agent": self.user_agent, **(headers or {})}
        for name in current_headers:
            if name.lower() in FORBIDDEN_REQUEST_HEADERS:
                raise ValueError(f"header '{name}' is set by the client and cannot be overridden")
        current_url = url
        for hop in range(max_redirects + 1):
            response = self._once(_Hop(method, current_url, current_headers, body, deadline, limit, truncate))
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location or max_redirects == 0:
                return replace(response, redirects=hop)
            if hop == max_redirects:
                raise TooManyRedirects(f"more than {max_redirects} redirects (last to {location})")
            next_url = urlunsplit(urlsplit(urljoin(current_url, location))._replace(fragment=""))
            try:
                check_url(next_url)
            except InvalidUrl as exc:
                raise InvalidUrl(f"redirected to an unusable URL ({exc.message})") from exc
            if response.status == 303 or (response.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
                current_headers = {k: v for k, v in current_headers.items() if k.lower() != "content-type"}
            if origin(next_url) != origin(current_url):
                current_headers = {k: v for k, v in current_headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            current_url = next_url
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, hop: _Hop) -> Response:
        parts = check_url(hop.url)
        targets = self._resolve(parts)
        host = _ascii_host(parts.hostname or "")
        scheme = parts.scheme.lower()
        port = parts.port or _default_port(scheme)
        last_error: Exception | None = None
        for target in targets:
            connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
            connection = connection_class(host, port, target, timeout=hop.deadline.remaining())
            try:
                connection.connect()
            except (OSError, ssl.SSLError) as exc:
                connection.close()
                if hop.deadline.expired or isinstance(exc, TimeoutError):
                    raise RequestTimeout(f"connecting to {host} timed out") from exc
                last_error = exc
                continue
            try:
                return self._exchange(connection, hop, parts)
            finally:
                connection.close()
        if isinstance(last_error, ssl.SSLCertVerificationError):
            raise ConnectionFailed(f"TLS certificate of {host} not accepted: {last_error.verify_message}")
        raise ConnectionFailed(f"could not connect to {host}:{port}: {last_error}")

    def _exchange(self, connection: http.client.HTTPConnection, hop: _Hop, parts: SplitResult) -> Response:
        sock = connection.sock
        assert sock is not None
        # One deadline for everything: per-operation socket timeouts alone let a slow server trickle forever.
        watchdog = threading.Timer(hop.deadline.remaining(), _shutdown, args=(sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            sock.settimeout(hop.deadline.remaining())
            connection.request(hop.method, _request_target(parts), body=hop.body, headers=dict(hop.headers))
            sock.settimeout(hop.deadline.remaining())
            raw = connection.getresponse()
            response_headers: dict[str, str] = {}
            for name, value in raw.getheaders():
                key = name.lower()
                response_headers[key] = f"{response_headers[key]}, {value}" if key in response_headers else value
            status, reason = raw.status, raw.reason
            truncated = False
            chunks: list[bytes] = []
            size = 0
            declared = response_headers.get("content-length", "")
            if (
                declared.isdigit()
                and int(declared) > hop.limit
                and not hop.truncate
                and status not in REDIRECT_STATUSES
            ):
                raise ResponseTooLarge(f"response is {int(declared)} bytes, more than the limit of {hop.limit}")
            if hop.method != "HEAD" and status not in REDIRECT_STATUSES:
                while True:
                    sock.settimeout(hop.deadline.remaining())
                    chunk = raw.read1(min(_CHUNK, hop.limit - size + 1))
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > hop.limit:
                        if not hop.truncate:
                            raise ResponseTooLarge(f"response is larger than the limit of {hop.limit} bytes")
                        chunks.append(chunk[: len(chunk) - (size - hop.limit)])
                        truncated = True
                        break
                    chunks.append(chunk)
            if hop.deadline.expired:  # the watchdog closed the socket: what was read is not the whole body
                raise RequestTimeout(f"{parts.hostname} did not answer in time")
            return Response(status, reason, response_headers, b"".join(chunks), hop.url, truncated)
        except NetError:
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError, ValueError) as exc:
            if hop.deadline.expired or isinstance(exc, TimeoutError):
                raise RequestTimeout(f"{parts.hostname} did not answer in time") from exc
            raise ConnectionFailed(f"{parts.hostname}: {type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS sockets: unblocks a read in another thread at the deadline.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
