"""``crawl-website``: a breadth-first crawl from one URL that honours robots.txt, stored page by page in S3.

- URLs are normalised (scheme and host lower-cased, default port and fragment dropped, dot segments resolved,
  escapes normalised) and fetched at most once; only http(s) links are followed, and with ``sameOrigin`` (default)
  only those on the start URL's scheme, host and port. Links to obvious non-pages (images, archives, media, ...)
  are listed but not fetched.
- ``/robots.txt`` of every origin is read once and obeyed for user agent ``jobs-crawler`` (unreachable or 5xx:
  nothing may be fetched; 4xx: everything may, as RFC 9309 says); its ``Crawl-delay`` (capped at 10 s) raises the
  politeness delay ``Settings.crawl_delay_seconds`` between requests.
- ``maxPages`` bounds the number of pages fetched; each fetched URL is one entry of ``pages``. HTML pages (up to
  ``Settings.crawl_max_page_bytes``) are stored at ``crawls/<job id>/<n>.html``; other content, error statuses and
  too-large pages are listed with ``key: null`` and the reason.
- Every request goes through the outbound address policy: a refused start URL fails the job; refused discovered
  links are skipped and listed in ``skipped``.
- The full result (every page, every link) is stored as ``crawls/<job id>/manifest.json``; its key is the
  result's ``key``, so ``GET /jobs/{id}/result`` hands out the manifest. The record keeps a capped summary.

One module although it is long: the URL normalisation, page parsing and robots.txt rules below serve this crawl
alone (no other module uses them), in sections: URLs, HTML, robots.txt, the crawl.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Annotated, Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, ConfigDict, Field

from functions.adapters.net import (
    BlockedAddress,
    InvalidUrl,
    NetError,
    Response,
    SafeHttpClient,
    check_url,
    job_failure,
    origin,
    status_failure,
    validate_http_url,
)
from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.bounds import HTTP_URL_PATTERN
from functions.models.errors import PermanentJobError, RetryableJobError

USER_AGENT = "jobs-crawler"
ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ROBOTS_MAX_BYTES = 512 * 1024
MAX_CRAWL_DELAY_SECONDS = 10.0
MAX_TITLE_LENGTH = 500
# The record keeps at most this many links and skipped entries, and about this much JSON; the manifest keeps more.
RESULT_LINKS = 200
RESULT_SKIPPED = 100
RESULT_MAX_BYTES = 128 * 1024
MANIFEST_LINKS = 10_000
MANIFEST_SKIPPED = 1_000
_NOT_PAGES = re.compile(
    r"\.(png|jpe?g|gif|webp|svg|ico|bmp|tiff?|pdf|zip|gz|tgz|bz2|xz|7z|rar|tar|mp3|mp4|m4a|ogg|wav|avi|mov|"
    r"mkv|webm|css|js|mjs|json|xml|woff2?|ttf|otf|eot|exe|dmg|iso|apk|bin|csv|docx?|xlsx?|pptx?)$",
    re.IGNORECASE,
)
_DISALLOW_ALL = ["User-agent: *", "Disallow: /"]
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"

HttpUrl = Annotated[
    str, Field(min_length=1, max_length=2048, pattern=HTTP_URL_PATTERN), AfterValidator(validate_http_url)
]


class CrawlPayload(Payload):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: HttpUrl
    max_pages: int = Field(default=50, ge=1, le=500, alias="maxPages")
    same_origin: bool = Field(default=True, alias="sameOrigin")


def page_key(job_id: str, n: int) -> str:
    return f"crawls/{job_id}/{n}.html"


def manifest_key(job_id: str) -> str:
    return f"crawls/{job_id}/manifest.json"


# --- URLs ---


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/" + "/".join(output)
    if path.endswith(("/.", "/..")) and not result.endswith("/"):
        result += "/"
    return result


def normalize_url(href: str, base: str | None = None) -> str | None:
    """An absolute, canonical http(s) URL without fragment, or None for anything not worth fetching."""
    href = re.sub(r"[\t\n\r]", "", href).strip()
    if not href:
        return None
    try:
        parts = urlsplit(urljoin(base, href) if base else href)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    try:
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except UnicodeError:
        return None
    host = host.lower().rstrip(".")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != (443 if scheme == "https" else 80):
        netloc += f":{port}"
    path = _upper_escapes(quote(remove_dot_segments(parts.path or "/"), safe=_SAFE_PATH))
    query = _upper_escapes(quote(parts.query, safe=_SAFE_QUERY))
    url = urlunsplit((scheme, netloc, path, query, ""))
    try:
        check_url(url)
    except InvalidUrl:
        return None
    return url


def _upper_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda match: match.group(0).upper(), text)


# --- HTML ---


class PageParser(HTMLParser):
    """The first ``<title>``, ``<base href>`` and every ``<a href>``/``<area href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.base: str | None = None
        self.hrefs: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        if tag == "svg":
            self._svg_depth += 1
        elif tag == "title" and self.title is None and self._svg_depth == 0:
            self._in_title = True
        elif tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag in ("a", "area") and values.get("href"):
            self.hrefs.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._svg_depth:
            self._svg_depth -= 1
        elif tag == "title" and self._in_title:
            self._in_title = False
            self.title = " ".join("".join(self._title_parts).split())[:MAX_TITLE_LENGTH]

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)


@dataclass(frozen=True)
class ParsedPage:
    title: str | None
    links: list[str]


def parse_page(html: str, url: str) -> ParsedPage:
    """Title and unique normalised links (in order of appearance) of an HTML page fetched from ``url``."""
    parser = PageParser()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:  # html.parser gives up on some malformed markup; keep what was found
        pass
    if parser._in_title:
        parser.title = " ".join("".join(parser._title_parts).split())[:MAX_TITLE_LENGTH]
    base = normalize_url(parser.base, url) if parser.base else None
    links: list[str] = []
    seen: set[str] = set()
    for href in parser.hrefs:
        link = normalize_url(href, base or url)
        if link is not None and link not in seen:
            seen.add(link)
            links.append(link)
    return ParsedPage(parser.title or None, links)


def decode_html(response: Response) -> str:
    charset = response.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return response.body.decode(charset, errors="replace")


# --- robots.txt ---


@dataclass
class Robots:
    """robots.txt of each origin, fetched once through the same client."""

    client: SafeHttpClient
    pace: Callable[[float], None]
    base_delay: float
    _by_origin: dict[tuple[str, str, int], RobotFileParser] = field(default_factory=dict)
    # Origins whose robots.txt could not be read (network trouble, 5xx): why, for the caller to decide.
    unavailable: dict[tuple[str, str, int], str] = field(default_factory=dict)
    # Origins the outbound address policy refuses: why (their robots.txt was never asked for).
    refused: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def parser(self, url: str) -> RobotFileParser:
        key = origin(url)
        if key not in self._by_origin:
            self._by_origin[key] = self._load(url)
        return self._by_origin[key]

    def allowed(self, url: str) -> bool:
        return self.parser(url).can_fetch(USER_AGENT, url)

    def delay(self, url: str) -> float:
        crawl_delay = self.parser(url).crawl_delay(USER_AGENT)
        extra = min(float(crawl_delay), MAX_CRAWL_DELAY_SECONDS) if crawl_delay else 0.0
        return max(self.base_delay, extra)

    def _load(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        parser = RobotFileParser(robots_url)
        self.pace(self.base_delay)
        try:
            response = self.client.request(
                "GET", robots_url, headers={"Accept": "text/plain"}, max_bytes=ROBOTS_MAX_BYTES, truncate=True
            )
        except BlockedAddress as exc:
            parser.parse(_DISALLOW_ALL)  # nothing there may be fetched, by our policy rather than the site's
            self.refused[origin(url)] = exc.message
            return parser
        except NetError as exc:
            parser.parse(_DISALLOW_ALL)  # unreachable: assume nothing may be crawled
            self.unavailable[origin(url)] = exc.message
            return parser
        if response.ok:
            parser.parse(response.body.decode("utf-8", errors="replace").splitlines())
        elif 400 <= response.status <= 499:
            parser.parse([])
        else:
            parser.parse(_DISALLOW_ALL)
            self.unavailable[origin(url)] = f"HTTP {response.status}"
        return parser


class Pacer:
    """Sleeps so that consecutive requests are at least ``delay`` seconds apart."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._last: float | None = None

    def __call__(self, delay: float) -> None:
        now = time.monotonic()
        if self._last is not None and delay > 0:
            wait = self._last + delay - now
            if wait > 0:
                self._sleep(wait)
        self._last = time.monotonic()


# --- the crawl ---


@dataclass
class Crawl:
    ctx: JobContext
    payload: CrawlPayload
    client: SafeHttpClient
    pacer: Pacer
    pages: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    stored: int = 0
    stopped: str | None = None

    def run(self) -> dict[str, Any]:
        start = normalize_url(self.payload.url)
        if start is None:
            raise PermanentJobError(f"crawl failed: cannot crawl {self.payload.url}")
        try:
            self.client.resolve(start)
        except NetError as exc:
            raise job_failure(exc, "crawl") from exc
        start_origin = origin(start)
        robots = Robots(self.client, self.pacer, self.ctx.settings.crawl_delay_seconds)
        queue: deque[str] = deque([start])
        seen = {start}
        found: set[str] = set()
        # The whole crawl must fit in this attempt's invocation (shared with its batch): it stops with what it has
        # while a request still fits before the deadline, rather than be cut off and retried from scratch.
        budget_ends = time.monotonic() + self.ctx.seconds_left() - 1.0
        while queue and len(self.pages) < self.payload.max_pages:
            needed = self.ctx.settings.http_timeout_seconds + self.ctx.settings.crawl_delay_seconds
            if self.pages and time.monotonic() + needed > budget_ends:
                self.stopped = "time budget spent (the consumer invocation is ending)"
                break
            url = queue.popleft()
            done = len(self.pages)
            self.ctx.report_progress(
                100 * done / self.payload.max_pages, f"{done} of at most {self.payload.max_pages} pages"
            )
            if not robots.allowed(url):
                if refusal := robots.refused.get(origin(url)):
                    if not self.pages:
                        raise PermanentJobError(f"crawl failed: {refusal}")
                    self._skip(url, refusal)
                    continue
                reason = robots.unavailable.get(origin(url))
                if not self.pages and reason is not None:
                    raise RetryableJobError(f"crawl failed: robots.txt of {url} could not be read ({reason})")
                self._skip(url, "disallowed by robots.txt" + (f" (unavailable: {reason})" if reason else ""))
                continue
            self.pacer(robots.delay(url))
            first = not self.pages
            try:
                response = self.client.request(
                    "GET",
                    url,
                    headers={"Accept": ACCEPT},
                    max_bytes=self.ctx.settings.crawl_max_page_bytes,
                )
            except BlockedAddress as exc:
                if first:
                    raise job_failure(exc, "crawl") from exc
                self._skip(url, exc.message)
                continue
            except NetError as exc:
                if first:
                    raise job_failure(exc, "crawl") from exc
                self.pages.append(self._entry(url, None, error=exc.message))
                continue
            if first and not response.ok:
                raise status_failure(response.status, response.reason, f"crawl of {url}")
            final = normalize_url(response.url) or url
            seen.add(final)
            if not response.ok:
                self.pages.append(self._entry(final, response.status, error=f"HTTP {response.status}"))
                continue
            if final != url and self.payload.same_origin and origin(final) != start_origin:
                self.pages.append(self._entry(final, response.status, skipped="redirected to another origin"))
                continue
            if final != url and not robots.allowed(final):
                why = robots.refused.get(origin(final), "disallowed by robots.txt")
                self.pages.append(self._entry(final, response.status, skipped=why))
                continue
            if response.media_type not in HTML_TYPES:
                reason = f"not HTML ({response.media_type or 'no content type'})"
                self.pages.append(self._entry(final, response.status, skipped=reason))
                continue
            page = parse_page(decode_html(response), final)
            key = self._store(response)
            self.pages.append(
                {"url": final, "title": page.title, "status": response.status, "links": len(page.links), "key": key}
            )
            for link in page.links:
                if link not in found:
                    found.add(link)
                    self.links.append(link)
                if link in seen or _NOT_PAGES.search(urlsplit(link).path):
                    continue
                if self.payload.same_origin and origin(link) != start_origin:
                    continue
                seen.add(link)
                queue.append(link)
        return self._finish(start)

    def _entry(
        self, url: str, status: int | None, *, error: str | None = None, skipped: str | None = None
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": url, "title": None, "status": status, "links": 0, "key": None}
        if error is not None:
            entry["error"] = error
        if skipped is not None:
            entry["skipped"] = skipped
        return entry

    def _skip(self, url: str, reason: str) -> None:
        if len(self.skipped) < MANIFEST_SKIPPED:
            self.skipped.append({"url": url, "reason": reason})

    def _store(self, response: Response) -> str:
        self.stored += 1
        key = page_key(self.ctx.job_id, self.stored)
        self._put(key, response.body, response.content_type or "text/html")
        return key

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.ctx.client("s3").put_object(
                Bucket=self.ctx.settings.files_bucket, Key=key, Body=body, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise RetryableJobError(f"storing crawl output {key} in S3 failed: {exc}") from exc

    def _finish(self, start: str) -> dict[str, Any]:
        key = manifest_key(self.ctx.job_id)
        manifest = {
            "url": start,
            "count": len(self.pages),
            "stored": self.stored,
            "pages": self.pages,
            "links": self.links[:MANIFEST_LINKS],
            "linksTotal": len(self.links),
            "skipped": self.skipped,
        }
        if self.stopped:
            manifest["stopped"] = self.stopped
        self._put(key, json.dumps(manifest, ensure_ascii=False).encode("utf-8"), "application/json")
        result: dict[str, Any] = {
            **manifest,
            "links": self.links[:RESULT_LINKS],
            "skipped": self.skipped[:RESULT_SKIPPED],
            "key": key,
        }
        shown = len(self.pages)
        while shown > 1 and len(json.dumps(result)) > RESULT_MAX_BYTES:
            shown //= 2
            result["pages"] = self.pages[:shown]
            result["pagesTruncated"] = True  # the manifest has them all
        return result


@job_type("crawl-website", payload=CrawlPayload)
def crawl_website(payload: CrawlPayload, ctx: JobContext) -> dict[str, Any]:
    client = SafeHttpClient.from_settings(ctx.settings, user_agent=USER_AGENT)
    return Crawl(ctx, payload, client, Pacer()).run()
