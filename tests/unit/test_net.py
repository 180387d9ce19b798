"""The outbound HTTP policy: address vetting after DNS and on every redirect, URL checks, failure classification.

No network: IP literals resolve locally, host names through a fake resolver, and responses come from a fake
exchange that still goes through the client's own resolution and vetting for every hop.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

import pytest

from functions.adapters import net
from functions.adapters.net import (
    BlockedAddress,
    ConnectionFailed,
    InvalidUrl,
    OutboundPolicy,
    RequestTimeout,
    Response,
    ResponseTooLarge,
    SafeHttpClient,
    TooManyRedirects,
    check_url,
    job_failure,
    refusal_reason,
    status_failure,
    validate_http_url,
)
from functions.models.errors import PermanentJobError, RetryableJobError
from functions.settings import Settings

PUBLIC_IP = "93.184.216.34"

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "not globally routable"),
    ("192.0.2.1", "private"),
    ("198.18.0.1", "private"),
    ("2001:db8::1", "private"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "loopback (embedded in an IPv6 address)"),
    ("::ffff:169.254.169.254", "link-local (embedded in an IPv6 address)"),
    ("::ffff:10.0.0.1", "private (embedded in an IPv6 address)"),
    ("::ffff:0.0.0.0", "unspecified (embedded in an IPv6 address)"),
    ("2002:7f00:1::1", "loopback (embedded in an IPv6 address)"),  # 6to4 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local (embedded in an IPv6 address)"),  # NAT64 of 169.254.169.254
    ("::127.0.0.1", "loopback (embedded in an IPv6 address)"),  # IPv4-compatible
]
PUBLIC = [
    PUBLIC_IP,
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped public address
    "64:ff9b::808:808",  # NAT64 (DNS64) form of 8.8.8.8
    "2002:808:808::1",  # 6to4 around a public address
]


def url_for(ip: str, path: str = "/") -> str:
    return f"http://[{ip}]{path}" if ":" in ip else f"http://{ip}{path}"


def fake_resolver(table: Mapping[str, list[str]]) -> Any:
    """A getaddrinfo that answers from a table (host -> addresses) and fails for anything else."""

    def resolve(host: str, port: int, *_: Any, **__: Any) -> list[tuple[Any, ...]]:
        addresses = table.get(host)
        if addresses is None:
            try:
                addresses = [str(ipaddress.ip_address(host))]  # literals resolve to themselves
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        answers = []
        for address in addresses:
            if ":" in address:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return answers

    return resolve


class ScriptedClient(SafeHttpClient):
    """The real client up to the socket: every hop is parsed and resolved and vetted, then answered from a script."""

    def __init__(self, responses: Mapping[str, tuple[int, dict[str, str], bytes]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.responses = responses
        self.sent: list[tuple[str, str, dict[str, str], bytes | None]] = []

    def _once(self, hop: Any) -> Response:
        self._resolve(check_url(hop.url))  # the same vetting a real hop gets
        self.sent.append((hop.method, hop.url, dict(hop.headers), hop.body))
        status, response_headers, response_body = self.responses[hop.url]
        return Response(status, "", {k.lower(): v for k, v in response_headers.items()}, response_body, hop.url)


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the client ever opens a connection."""

    def refuse(*_: Any) -> socket.socket:
        raise AssertionError("a connection was opened")

    monkeypatch.setattr(net, "_open_socket", refuse)


# --- addresses ---


@pytest.mark.parametrize(("ip", "reason"), BLOCKED)
def test_every_non_public_address_class_is_refused(ip: str, reason: str) -> None:
    # Given an address of a class outbound requests must not reach
    address = ipaddress.ip_address(ip)
    # When / Then
    assert refusal_reason(address) == reason


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert refusal_reason(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize("ip", [ip for ip, _ in BLOCKED])
def test_a_url_naming_a_blocked_address_is_refused_before_any_connection(ip: str, no_sockets: None) -> None:
    # Given a client with an empty allowlist (as on AWS)
    client = SafeHttpClient(policy=OutboundPolicy.parse(""))
    # When / Then
    with pytest.raises(BlockedAddress, match="refused to connect to"):
        client.request("GET", url_for(ip))


def test_decimal_and_short_forms_of_loopback_are_resolved_then_refused(no_sockets: None) -> None:
    # Given URLs spelling 127.0.0.1 unusually (the resolver turns them into the address)
    client = SafeHttpClient()
    for url in ("http://2130706433/", "http://127.1/", "http://0x7f000001/"):
        # When / Then
        with pytest.raises(BlockedAddress, match="loopback"):
            client.request("GET", url)


@pytest.mark.parametrize(
    ("allowlist", "ip"),
    [
        ("127.0.0.0/8,::1/128", "127.0.0.1"),
        ("127.0.0.0/8,::1/128", "::1"),
        ("127.0.0.0/8", "::ffff:127.0.0.1"),
        (" 10.0.0.0/8 , 169.254.169.254/32 ", "169.254.169.254"),
        ("fd00::/8", "fd12::7"),
    ],
)
def test_the_allowlist_admits_its_cidrs(allowlist: str, ip: str) -> None:
    # Given an allowlist covering the address
    policy = OutboundPolicy.parse(allowlist)
    # When
    policy.check(ip, ipaddress.ip_address(ip))
    # Then nothing was raised
    assert policy.allowlisted(ipaddress.ip_address(ip))


@pytest.mark.parametrize(("allowlist", "ip"), [("127.0.0.0/8", "10.0.0.1"), ("127.0.0.0/8", "::1"), ("", "127.0.0.1")])
def test_the_allowlist_admits_nothing_else(allowlist: str, ip: str) -> None:
    policy = OutboundPolicy.parse(allowlist)
    with pytest.raises(BlockedAddress):
        policy.check(ip, ipaddress.ip_address(ip))


def test_the_allowlist_comes_from_settings_and_rejects_garbage() -> None:
    policy = OutboundPolicy.from_settings(Settings(outbound_allowlist="127.0.0.0/8,::1/128"))
    assert [str(network) for network in policy.allowlist] == ["127.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match="not a CIDR"):
        OutboundPolicy.parse("127.0.0.0/8,localhost")


def test_a_host_name_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_sockets: None
) -> None:
    # Given DNS answering a private address for an innocent-looking name (socket.getaddrinfo itself is patched)
    monkeypatch.setattr(socket, "getaddrinfo", fake_resolver({"hooks.example.com": ["10.20.30.40"]}))
    client = SafeHttpClient()
    # When / Then
    with pytest.raises(BlockedAddress) as raised:
        client.request("POST", "https://hooks.example.com/in", body=b"{}")
    assert "hooks.example.com (resolves to 10.20.30.40): private address" in raised.value.message


def test_a_host_name_with_one_private_address_among_public_ones_is_refused(no_sockets: None) -> None:
    # Given a name with a public and a metadata-service address
    client = SafeHttpClient(resolver=fake_resolver({"mixed.example": [PUBLIC_IP, "169.254.169.254"]}))
    # When / Then: no mixing, whatever order a connection would try them in
    with pytest.raises(BlockedAddress, match="link-local"):
        client.resolve("http://mixed.example/")


def test_a_host_name_resolving_to_public_addresses_is_vetted_once_and_pinned() -> None:
    # Given
    client = SafeHttpClient(resolver=fake_resolver({"example.com": [PUBLIC_IP, "2606:2800:220:1::1"]}))
    # When
    targets = client.resolve("https://example.com:8443/x")
    # Then: the connection goes to these socket addresses, not to a second lookup of the name
    assert targets == [
        (socket.AF_INET, (PUBLIC_IP, 8443)),
        (socket.AF_INET6, ("2606:2800:220:1::1", 8443, 0, 0)),
    ]


def test_an_unresolvable_name_is_a_retryable_connection_failure(no_sockets: None) -> None:
    client = SafeHttpClient(resolver=fake_resolver({}))
    with pytest.raises(ConnectionFailed, match=r"could not resolve nowhere\.example"):
        client.request("GET", "http://nowhere.example/")


# --- redirects ---


def test_a_redirect_to_a_private_address_is_refused() -> None:
    # Given a public host that redirects to the metadata service
    client = ScriptedClient(
        {"http://public.example/start": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")},
        resolver=fake_resolver({"public.example": [PUBLIC_IP]}),
    )
    # When / Then: the first hop was sent, the second refused before being sent
    with pytest.raises(BlockedAddress, match=r"169\.254\.169\.254"):
        client.request("GET", "http://public.example/start")
    assert [url for _, url, _, _ in client.sent] == ["http://public.example/start"]


def test_a_redirect_to_a_name_resolving_to_loopback_is_refused() -> None:
    client = ScriptedClient(
        {"https://public.example/": (307, {"Location": "//sneaky.example:8080/admin"}, b"")},
        resolver=fake_resolver({"public.example": [PUBLIC_IP], "sneaky.example": ["127.0.0.1"]}),
    )
    with pytest.raises(BlockedAddress, match=r"sneaky.example \(resolves to 127.0.0.1\): loopback"):
        client.request("GET", "https://public.example/")


def test_redirects_are_followed_up_to_the_limit() -> None:
    # Given a chain of six redirects
    script = {f"http://a.example/{n}": (301, {"Location": f"/{n + 1}"}, b"") for n in range(6)}
    script["http://a.example/6"] = (200, {}, b"done")
    resolver = fake_resolver({"a.example": [PUBLIC_IP]})
    # When / Then: five are followed, the sixth is too many
    assert ScriptedClient(script, resolver=resolver).request("GET", "http://a.example/1").body == b"done"
    with pytest.raises(TooManyRedirects):
        ScriptedClient(script, resolver=resolver).request("GET", "http://a.example/0")


def test_a_303_turns_a_post_into_a_get_and_credentials_do_not_cross_origins() -> None:
    # Given
    client = ScriptedClient(
        {
            "http://a.example/form": (303, {"Location": "http://b.example/done"}, b""),
            "http://b.example/done": (200, {"Content-Type": "text/plain"}, b"ok"),
        },
        resolver=fake_resolver({"a.example": [PUBLIC_IP], "b.example": ["8.8.8.8"]}),
    )
    # When
    response = client.request(
        "POST",
        "http://a.example/form",
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
        body=b"{}",
    )
    # Then
    assert response.url == "http://b.example/done" and response.redirects == 1
    method, _, headers, body = client.sent[1]
    assert method == "GET" and body is None
    assert "Authorization" not in headers and "Content-Type" not in headers


def test_a_redirect_to_another_scheme_is_refused() -> None:
    client = ScriptedClient(
        {"http://a.example/": (302, {"Location": "file:///etc/passwd"}, b"")},
        resolver=fake_resolver({"a.example": [PUBLIC_IP]}),
    )
    with pytest.raises(InvalidUrl, match="redirected to an unusable URL"):
        client.request("GET", "http://a.example/")


def test_with_no_redirects_allowed_the_3xx_itself_is_returned() -> None:
    client = ScriptedClient(
        {"http://a.example/": (302, {"Location": "http://127.0.0.1/"}, b"")},
        resolver=fake_resolver({"a.example": [PUBLIC_IP]}),
    )
    assert client.request("POST", "http://a.example/", max_redirects=0).status == 302


# --- URLs and headers ---


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("example.com/x", "scheme must be http or https"),
        ("http:///x", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com/a b", "whitespace"),
        ("http://example.com:99999/", "malformed"),
        ("http://example.com:0/", "port"),
        ("http://" + "a" * 2100 + ".com/", "longer than"),
        ("", "empty"),
    ],
)
def test_only_plain_http_urls_with_a_host_are_accepted(url: str, message: str) -> None:
    with pytest.raises(InvalidUrl, match=message):
        check_url(url)
    with pytest.raises(ValueError, match=message):
        validate_http_url(url)


def test_a_valid_url_is_kept_as_given_but_stripped() -> None:
    assert validate_http_url("  https://Example.com:8443/a?b=c#d ") == "https://Example.com:8443/a?b=c#d"


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade"])
def test_framing_and_hop_by_hop_headers_cannot_be_overridden(name: str, no_sockets: None) -> None:
    with pytest.raises(ValueError, match="cannot be overridden"):
        SafeHttpClient().request("GET", f"http://{PUBLIC_IP}/", headers={name: "x"})


# --- failure classification ---


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_timeouts_throttling_and_server_errors_are_retryable(status: int) -> None:
    assert isinstance(status_failure(status, what="endpoint"), RetryableJobError)


@pytest.mark.parametrize("status", [300, 301, 304, 400, 401, 403, 404, 405, 409, 410, 413, 422, 451])
def test_other_statuses_are_permanent(status: int) -> None:
    failure = status_failure(status, "Nope", what="endpoint", detail="why")
    assert isinstance(failure, PermanentJobError)
    assert str(failure) == f"endpoint answered HTTP {status} Nope: why"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (BlockedAddress("refused"), False),
        (InvalidUrl("bad"), False),
        (TooManyRedirects("loop"), False),
        (ResponseTooLarge("big"), False),
        (RequestTimeout("slow"), True),
        (ConnectionFailed("reset"), True),
    ],
)
def test_network_errors_map_to_job_failures(error: net.NetError, retryable: bool) -> None:
    failure = job_failure(error, "fetch")
    assert failure.retryable is retryable
    assert str(failure) == f"fetch failed: {error.message}"
