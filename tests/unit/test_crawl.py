"""crawl-website: URL normalisation, HTML parsing, robots.txt, sameOrigin, maxPages, refusals, pacing.

The site is a script served through the real client down to the socket: every request, including redirects and
robots.txt, is resolved (fake DNS) and vetted by the client's own policy before it is answered.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any

import pytest

from functions.adapters.net import (
    OutboundPolicy,
    Response,
    ResponseTooLarge,
    SafeHttpClient,
    check_url,
)
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.crawl import Crawl, CrawlPayload, Pacer, normalize_url, parse_page
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError
from functions.settings import Settings

JOB_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
DNS = {"site.example": "93.184.216.34", "other.example": "8.8.8.8", "intranet.example": "10.0.0.7"}
Page = tuple[int, str, bytes]  # status, content type, body


def html(title: str, *hrefs: str) -> Page:
    links = "".join(f'<a href="{href}">{href}</a>' for href in hrefs)
    return 200, "text/html; charset=utf-8", f"<html><head><title>{title}</title></head><body>{links}</body>".encode()


class FakeSite(SafeHttpClient):
    def __init__(self, pages: Mapping[str, Page | tuple[int, dict[str, str]]], **kwargs: Any) -> None:
        def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
            address = DNS.get(host, host)
            if not address[:1].isdigit():
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        super().__init__(resolver=resolve, **kwargs)
        self.pages = pages
        self.requested: list[str] = []

    def _once(self, hop: Any) -> Response:
        url = hop.url
        self._resolve(check_url(url))
        self.requested.append(url)
        page = self.pages.get(url, (404, "text/plain", b"not found"))
        if len(page) == 2:  # a redirect
            return Response(page[0], "", {k.lower(): v for k, v in page[1].items()}, b"", url)  # type: ignore[misc]
        status, content_type, content = page  # type: ignore[misc]
        if len(content) > hop.limit:
            raise ResponseTooLarge("too large")
        return Response(status, "", {"content-type": content_type}, content, url)


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self.objects[Key] = (Body, ContentType)
        return {}


def run(
    site: FakeSite,
    s3: FakeS3,
    sleeps: list[float] | None = None,
    lease: int = 60,
    seconds_left: float | None = None,
    **payload: Any,
) -> dict[str, Any]:
    ctx = JobContext(
        job_id=JOB_ID,
        tenant="acme",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(crawl_delay_seconds=0.0, crawl_max_page_bytes=1000, default_lease_seconds=lease),
        client=lambda service: s3,
        deadline_ms=None if seconds_left is None else int(time.time() * 1000 + seconds_left * 1000),
    )
    parsed = CrawlPayload.model_validate({"url": "http://site.example/", **payload})
    pacer = Pacer(sleep=(sleeps.append if sleeps is not None else lambda seconds: None))
    return Crawl(ctx, parsed, site, pacer).run()


SITE: dict[str, Any] = {
    "http://site.example/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
    "http://site.example/": html("Home", "/a", "b.html#top", "/private/x", "http://other.example/", "/doc.pdf"),
    "http://site.example/a": html("Page A", "/", "/c", "mailto:x@example.com"),
    "http://site.example/b.html": html("Page B", "/a", "HTTP://SITE.EXAMPLE:80/c?q=1"),
    "http://site.example/c": html("Page C"),
    "http://site.example/c?q=1": (200, "application/json", b"{}"),
    "http://site.example/private/x": html("Secret"),
    "http://other.example/robots.txt": (404, "text/plain", b""),
    "http://other.example/": html("Other", "/o1"),
    "http://other.example/o1": html("Other 1"),
}


# --- URLs and HTML ---


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c#frag", None, "http://example.com/a/c"),
        ("https://example.com:443", None, "https://example.com/"),
        ("https://example.com:8443/x?b=2&a=1", None, "https://example.com:8443/x?b=2&a=1"),
        ("../up", "http://example.com/a/b/c", "http://example.com/a/up"),
        ("?q=%7e", "http://example.com/p", "http://example.com/p?q=%7E"),
        ("/a b/é", "http://example.com/", "http://example.com/a%20b/%C3%A9"),
        ("//cdn.example.com/x", "https://example.com/", "https://cdn.example.com/x"),
        ("  /x\n", "http://example.com/", "http://example.com/x"),
        ("http://bücher.example/", None, "http://xn--bcher-kva.example/"),
        ("http://[::1]:8080/", None, "http://[::1]:8080/"),
        ("#only-a-fragment", "http://example.com/p", "http://example.com/p"),
        ("mailto:a@example.com", "http://example.com/", None),
        ("javascript:alert(1)", "http://example.com/", None),
        ("ftp://example.com/", None, None),
        ("http://user:pw@example.com/", None, None),
        ("http://example.com:99999/", None, None),
        ("", "http://example.com/", None),
    ],
)
def test_urls_are_normalised(href: str, base: str | None, expected: str | None) -> None:
    assert normalize_url(href, base) == expected


def test_a_page_yields_its_title_and_unique_links_resolved_against_base() -> None:
    # Given
    page = b"""<html><head><title>  The
        Title </title><base href="/docs/"></head><body>
        <svg><title>icon</title></svg>
        <a href="intro">1</a><a href="intro#x">2</a><A HREF="/abs">3</A><a>none</a><area href="map">
        <a href="https://other.example/">4</a></body></html>"""
    # When
    parsed = parse_page(page.decode(), "http://example.com/start")
    # Then
    assert parsed.title == "The Title"
    assert parsed.links == [
        "http://example.com/docs/intro",
        "http://example.com/abs",
        "http://example.com/docs/map",
        "https://other.example/",
    ]


# --- the crawl ---


def test_a_same_origin_crawl_honours_robots_and_collects_pages_and_links() -> None:
    # Given
    site, s3 = FakeSite(SITE), FakeS3()
    # When
    result = run(site, s3)
    # Then: breadth-first, fragment dropped, robots honoured, off-origin and .pdf links not followed
    assert [(p["url"], p["title"], p["status"]) for p in result["pages"]] == [
        ("http://site.example/", "Home", 200),
        ("http://site.example/a", "Page A", 200),
        ("http://site.example/b.html", "Page B", 200),
        ("http://site.example/c", "Page C", 200),
        ("http://site.example/c?q=1", None, 200),
    ]
    assert result["pages"][4]["skipped"] == "not HTML (application/json)" and result["pages"][4]["key"] is None
    assert "http://site.example/private/x" not in site.requested
    assert "http://other.example/" not in site.requested and "http://site.example/doc.pdf" not in site.requested
    assert result["skipped"] == [{"url": "http://site.example/private/x", "reason": "disallowed by robots.txt"}]
    assert result["links"] == [
        "http://site.example/a",
        "http://site.example/b.html",
        "http://site.example/private/x",
        "http://other.example/",
        "http://site.example/doc.pdf",
        "http://site.example/",
        "http://site.example/c",
        "http://site.example/c?q=1",
    ]
    assert [p["links"] for p in result["pages"]] == [5, 2, 2, 0, 0]
    # and every HTML page is stored, plus a manifest naming them all
    assert result["count"] == 5 and result["stored"] == 4
    assert [p["key"] for p in result["pages"][:4]] == [f"crawls/{JOB_ID}/{n}.html" for n in range(1, 5)]
    assert s3.objects[f"crawls/{JOB_ID}/2.html"] == (SITE["http://site.example/a"][2], "text/html; charset=utf-8")
    assert result["key"] == f"crawls/{JOB_ID}/manifest.json"
    manifest = json.loads(s3.objects[result["key"]][0])
    assert manifest["pages"] == result["pages"] and manifest["links"] == result["links"]


def test_without_same_origin_other_hosts_are_crawled_under_their_own_robots() -> None:
    site = FakeSite(SITE)
    result = run(site, FakeS3(), sameOrigin=False)
    urls = [p["url"] for p in result["pages"]]
    assert "http://other.example/" in urls and "http://other.example/o1" in urls
    assert "http://other.example/robots.txt" in site.requested  # 404: everything allowed


def test_max_pages_bounds_the_fetches() -> None:
    site = FakeSite(SITE)
    result = run(site, FakeS3(), maxPages=2)
    assert [p["url"] for p in result["pages"]] == ["http://site.example/", "http://site.example/a"]
    assert [url for url in site.requested if not url.endswith("robots.txt")] == [
        "http://site.example/",
        "http://site.example/a",
    ]


def test_the_crawl_stops_with_what_it_has_when_its_time_budget_is_spent() -> None:
    # Given less time left in the invocation than one more request could take (a 10 s request timeout)
    result = run(FakeSite(SITE), FakeS3(), seconds_left=9)
    # Then: the start page only, said so, and still a manifest
    assert [p["url"] for p in result["pages"]] == ["http://site.example/"]
    assert result["stopped"].startswith("time budget spent") and result["key"].endswith("manifest.json")


def test_a_start_url_disallowed_by_robots_crawls_nothing() -> None:
    site = FakeSite({"http://site.example/robots.txt": (200, "text/plain", b"User-agent: jobs-crawler\nDisallow: /")})
    result = run(site, FakeS3())
    assert result["pages"] == [] and result["count"] == 0
    assert result["skipped"] == [{"url": "http://site.example/", "reason": "disallowed by robots.txt"}]
    assert site.requested == ["http://site.example/robots.txt"]


def test_a_robots_txt_answering_5xx_on_the_start_origin_is_retryable() -> None:
    site = FakeSite({"http://site.example/robots.txt": (503, "text/plain", b"")})
    with pytest.raises(RetryableJobError, match=r"robots\.txt .* could not be read \(HTTP 503\)"):
        run(site, FakeS3())


def test_discovered_links_to_refused_addresses_are_skipped_not_fatal() -> None:
    site = FakeSite(
        {
            "http://site.example/": html("Home", "http://intranet.example/admin", "/next"),
            "http://site.example/next": (302, {"Location": "http://169.254.169.254/latest/"}),
        }
    )
    result = run(site, FakeS3(), sameOrigin=False)
    assert [p["url"] for p in result["pages"]] == ["http://site.example/"]
    reasons = {entry["url"]: entry["reason"] for entry in result["skipped"]}
    assert "private address" in reasons["http://intranet.example/admin"]
    # The address policy refused it: the reason says so, not that the site's robots.txt did
    assert "robots.txt" not in reasons["http://intranet.example/admin"]
    assert "169.254.169.254" in reasons["http://site.example/next"]
    assert not any("intranet" in url or "169.254" in url for url in site.requested)


def test_a_refused_start_url_fails_permanently() -> None:
    site = FakeSite({})
    with pytest.raises(PermanentJobError, match=r"crawl failed: refused to connect to intranet\.example"):
        run(site, FakeS3(), url="http://intranet.example/")
    assert site.requested == []


@pytest.mark.parametrize(("status", "expected"), [(404, PermanentJobError), (503, RetryableJobError)])
def test_a_failing_start_page_is_classified_like_fetch(status: int, expected: type[Exception]) -> None:
    site = FakeSite({"http://site.example/": (status, "text/html", b"")})
    with pytest.raises(expected, match=f"HTTP {status}"):
        run(site, FakeS3())


def test_failing_and_too_large_discovered_pages_are_listed_with_their_reason() -> None:
    site = FakeSite(
        {
            "http://site.example/": html("Home", "/gone", "/huge"),
            "http://site.example/huge": (200, "text/html", b"x" * 2000),
        }
    )
    result = run(site, FakeS3())
    assert result["pages"][1] == {
        "url": "http://site.example/gone",
        "title": None,
        "status": 404,
        "links": 0,
        "key": None,
        "error": "HTTP 404",
    }
    assert result["pages"][2]["error"] == "too large" and result["pages"][2]["status"] is None


def test_requests_are_paced_by_the_politeness_delay_and_crawl_delay() -> None:
    # Given robots.txt asking for 1 s between requests and a configured delay of 0
    pages = dict(SITE)
    pages["http://site.example/robots.txt"] = (200, "text/plain", b"User-agent: *\nCrawl-delay: 1\n")
    sleeps: list[float] = []
    # When
    run(FakeSite(pages), FakeS3(), sleeps=sleeps, maxPages=3)
    # Then: robots.txt counts as a request; each of the three pages waited (almost) the crawl delay
    assert len(sleeps) == 3 and all(0.9 < seconds <= 1 for seconds in sleeps)


def test_an_empty_allowlist_is_the_default_policy() -> None:
    assert FakeSite({}).policy == OutboundPolicy()


@pytest.mark.parametrize(
    "raw",
    [
        {"url": "http://site.example/", "maxPages": 0},
        {"url": "http://site.example/", "maxPages": 501},
        {"url": "file:///etc/passwd"},
        {"url": "http://site.example/", "depth": 2},
        {"maxPages": 5},
    ],
)
def test_invalid_payloads_are_refused_at_enqueue(raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        get_job_type("crawl-website").parse_payload(raw)


def test_payload_defaults() -> None:
    parsed = get_job_type("crawl-website").parse_payload({"url": "https://example.com"})
    assert parsed.max_pages == 50 and parsed.same_origin is True


def test_without_a_known_deadline_the_lease_setting_bounds_the_crawl() -> None:
    # Given no deadline on the context and a 9 s lease setting
    result = run(FakeSite(SITE), FakeS3(), lease=9)
    # Then it stops after the start page, as with a deadline 9 s away
    assert [p["url"] for p in result["pages"]] == ["http://site.example/"]
    assert result["stopped"].startswith("time budget spent")
