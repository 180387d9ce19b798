"""JobsClient against a fake HTTP layer: a requests transport adapter answering like the API (no network)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from jobsctl import (
    ConflictError,
    ForbiddenError,
    InvalidStateError,
    JobsApiError,
    JobsClient,
    JobsConnectionError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    ThrottledError,
    UnavailableError,
    ValidationError,
)

BASE = "http://api.test"
KEY = "unit-key"


def job_body(job_id: str, status: str = "pending", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "type": "simulate",
        "payload": {"target": "x"},
        "status": status,
        "priority": 5,
        "attempts": 0,
        "maxAttempts": 3,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "runAt": None,
        "startedAt": None,
        "completedAt": None,
        "result": None,
        "error": None,
        "history": [{"status": "pending", "at": "2026-01-01T00:00:00.000Z"}],
        **extra,
    }


Route = Callable[[requests.PreparedRequest], tuple[int, Any, dict[str, str]]]


@dataclass
class FakeApi(BaseAdapter):
    """Answers requests from a list of (method, path) routes; records every request it was sent."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    requests: list[requests.PreparedRequest] = field(default_factory=list)
    fail_with: Exception | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def on(self, method: str, path: str, route: Route) -> None:
        self.routes[(method, path)] = route

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        if self.fail_with:
            raise self.fail_with
        path = urlsplit(request.url or "").path
        route = self.routes.get((request.method or "", path))
        status, body, headers = route(request) if route else (404, {"error": "no route", "code": "NOT_FOUND"}, {})
        response = requests.Response()
        response.status_code = status
        response.reason = "reason"
        response.url = request.url or ""
        response.request = request
        response.headers.update({"content-type": "application/json", **headers})
        response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return response

    def close(self) -> None:
        return None


def query(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> JobsClient:
    session = requests.Session()
    session.mount("http://", api)
    return JobsClient(BASE + "/", KEY, timeout=5, session=session, sleep=lambda s: None)


def test_enqueue_posts_the_api_body_with_the_key_and_returns_a_typed_job(api: FakeApi, client: JobsClient) -> None:
    # Given an API that accepts the job
    api.on("POST", "/jobs", lambda r: (202, job_body("j1"), {"Location": "/jobs/j1"}))

    # When a job is enqueued with every option
    job = client.enqueue("simulate", {"target": "x"}, priority=8, max_attempts=5, delay_seconds=10, run_at=None)

    # Then the request carried the key and the camelCase body, and the answer is a frozen, snake_case Job
    (request,) = api.requests
    assert request.headers["x-api-key"] == KEY
    assert json.loads(request.body or b"") == {
        "type": "simulate",
        "payload": {"target": "x"},
        "priority": 8,
        "maxAttempts": 5,
        "delaySeconds": 10,
    }
    assert (job.id, job.status, job.max_attempts, job.history[0].status) == ("j1", "pending", 3, "pending")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        job.status = "completed"  # type: ignore[misc]


def test_enqueue_sends_a_timeout_and_the_job_shows_it(api: FakeApi, client: JobsClient) -> None:
    # Given an API that accepts the job and shows its timeout
    api.on("POST", "/jobs", lambda r: (202, {**job_body("j1"), "timeoutSeconds": 30}, {}))
    # When a job is enqueued with timeout_seconds
    job = client.enqueue("simulate", {"target": "x"}, timeout_seconds=30)
    # Then the body carried timeoutSeconds and the job has it
    assert json.loads(api.requests[0].body or b"")["timeoutSeconds"] == 30
    assert job.timeout_seconds == 30


def test_enqueue_sends_dependencies_and_the_job_shows_them(api: FakeApi, client: JobsClient) -> None:
    # Given an API that accepts a job waiting on two others
    body = {**job_body("j3"), "status": "waiting", "dependsOn": ["j1", "j2"], "waitingOn": 2}
    api.on("POST", "/jobs", lambda r: (202, body, {}))
    # When it is enqueued with depends_on
    job = client.enqueue("simulate", {"target": "x"}, depends_on=("j1", "j2"))
    # Then the body carried dependsOn and the typed job shows both fields
    assert json.loads(api.requests[0].body or b"")["dependsOn"] == ["j1", "j2"]
    assert (job.status, job.depends_on, job.waiting_on) == ("waiting", ("j1", "j2"), 2)


def test_enqueue_leaves_out_the_options_not_given(api: FakeApi, client: JobsClient) -> None:
    api.on("POST", "/jobs", lambda r: (202, job_body("j1"), {}))
    client.enqueue("message")
    assert json.loads(api.requests[0].body or b"") == {"type": "message"}


def test_list_follows_next_cursor_across_pages(api: FakeApi, client: JobsClient) -> None:
    # Given three pages of jobs chained by cursors
    pages = {
        None: {"jobs": [job_body("a"), job_body("b")], "count": 2, "nextCursor": "c1"},
        "c1": {"jobs": [job_body("c"), job_body("d")], "count": 2, "nextCursor": "c2"},
        "c2": {"jobs": [job_body("e")], "count": 1, "nextCursor": None},
    }
    api.on("GET", "/jobs", lambda r: (200, pages[query(r).get("cursor")], {}))

    # When every completed job of a type is listed, two per page
    ids = [job.id for job in client.list(status="completed", type="simulate", page_size=2)]

    # Then all five came back in order, each page asked with the filters and the previous page's cursor
    assert ids == ["a", "b", "c", "d", "e"]
    asked = [query(r) for r in api.requests]
    assert [q.get("cursor") for q in asked] == [None, "c1", "c2"]
    assert all(q["status"] == "completed" and q["type"] == "simulate" and q["limit"] == "2" for q in asked)


def test_list_is_lazy_and_stops_asking_once_the_caller_stops(api: FakeApi, client: JobsClient) -> None:
    api.on("GET", "/jobs", lambda r: (200, {"jobs": [job_body("a")], "count": 1, "nextCursor": "more"}, {}))
    iterator = client.list(page_size=1)
    assert next(iterator).id == "a"
    assert len(api.requests) == 1


def test_get_cancel_retry_and_stats_use_their_routes(api: FakeApi, client: JobsClient) -> None:
    api.on("GET", "/jobs/j%2F1", lambda r: (200, job_body("j/1"), {}))
    api.on("DELETE", "/jobs/j1", lambda r: (200, job_body("j1", "cancelled"), {}))
    api.on("POST", "/jobs/j1/retry", lambda r: (202, job_body("j1", "pending"), {}))
    api.on("GET", "/stats", lambda r: (200, {"total": 4, "completed": 3, "completionRate": 0.75}, {}))

    assert client.get("j/1").id == "j/1"  # ids are one path segment, whatever they contain
    assert client.cancel("j1").status == "cancelled"
    assert client.retry("j1").status == "pending"
    stats = client.stats()
    assert (stats.total, stats.completed, stats.completion_rate, stats.failed) == (4, 3, 0.75, 0)


def test_wait_polls_with_backoff_until_the_job_is_final(api: FakeApi) -> None:
    # Given a job that is processing for three reads, then completed, and a server without long-poll
    answers = iter(["pending", "processing", "processing", "completed"])
    api.on("GET", "/jobs/j1", lambda r: (200, job_body("j1", next(answers)), {}))
    sleeps: list[float] = []
    session = requests.Session()
    session.mount("http://", api)
    client = JobsClient(BASE, KEY, session=session, sleep=sleeps.append, clock=lambda: 0.0)

    # When it is waited for
    seen: list[str] = []
    job = client.wait("j1", timeout=60, on_update=lambda j: seen.append(j.status))

    # Then it was re-read with growing pauses (0.1 s doubling), never with ?wait=, until completed
    assert job.status == "completed"
    assert seen == ["pending", "processing", "processing", "completed"]
    assert sleeps == [0.1, 0.2, 0.4]
    assert all("wait" not in query(r) for r in api.requests)


def test_wait_uses_long_poll_when_the_server_advertises_it(api: FakeApi) -> None:
    # Given a server whose job responses say X-Long-Poll: 1
    answers = iter(["pending", "processing", "completed"])
    api.on("GET", "/jobs/j1", lambda r: (200, job_body("j1", next(answers)), {"X-Long-Poll": "1"}))
    sleeps: list[float] = []
    session = requests.Session()
    session.mount("http://", api)
    client = JobsClient(BASE, KEY, session=session, sleep=sleeps.append, clock=lambda: 0.0)

    # When a job is waited for
    assert client.wait("j1", timeout=60).status == "completed"

    # Then after the first read it asks the server to hold the request (at most 20 s), and never sleeps itself
    assert [query(r).get("wait") for r in api.requests] == [None, "20", "20"]
    assert sleeps == []


def test_wait_gives_up_after_its_timeout(api: FakeApi) -> None:
    api.on("GET", "/jobs/j1", lambda r: (200, job_body("j1", "processing"), {}))
    now = [0.0]
    session = requests.Session()
    session.mount("http://", api)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client = JobsClient(BASE, KEY, session=session, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(TimeoutError, match="still processing after 5s"):
        client.wait("j1", timeout=5)
    assert 4.9 <= now[0] <= 5.0


@pytest.mark.parametrize(
    ("status", "code", "exception"),
    [
        (400, "INVALID_PAYLOAD", ValidationError),
        (400, "INVALID_TYPE", ValidationError),
        (413, "PAYLOAD_TOO_LARGE", ValidationError),
        (403, "FORBIDDEN", ForbiddenError),
        (404, "NOT_FOUND", NotFoundError),
        (409, "INVALID_STATE", InvalidStateError),
        (409, "CONFLICT", ConflictError),
        (429, "THROTTLED", ThrottledError),
        (503, "UNAVAILABLE", UnavailableError),
        (500, "INTERNAL", ServerError),
        (418, "TEAPOT", JobsApiError),
    ],
)
def test_api_errors_are_exceptions_carrying_code_message_status_and_details(
    api: FakeApi, client: JobsClient, status: int, code: str, exception: type[JobsApiError]
) -> None:
    details = [{"loc": ["target"], "msg": "Field required"}]
    api.on("POST", "/jobs", lambda r: (status, {"error": "it went wrong", "code": code, "details": details}, {}))
    with pytest.raises(exception) as raised:
        client.enqueue("simulate", {})
    error = raised.value
    assert (error.code, error.message, error.status, error.details) == (code, "it went wrong", status, details)
    assert type(error) is exception


def test_rate_limited_carries_the_seconds_to_wait(api: FakeApi, client: JobsClient) -> None:
    body = {"error": "this key is over its rate limit", "code": "RATE_LIMITED", "details": {"retryAfterSeconds": 2}}
    api.on("GET", "/stats", lambda r: (429, body, {"Retry-After": "2"}))
    with pytest.raises(RateLimitedError) as raised:
        client.stats()
    assert isinstance(raised.value, ThrottledError)
    assert (raised.value.code, raised.value.status, raised.value.retry_after) == ("RATE_LIMITED", 429, 2)


def test_api_gateways_own_429_is_throttled(api: FakeApi, client: JobsClient) -> None:
    api.on("GET", "/stats", lambda r: (429, {"message": "Too Many Requests"}, {}))
    with pytest.raises(ThrottledError) as raised:
        client.stats()
    assert (raised.value.code, raised.value.message) == ("HTTP_429", "Too Many Requests")


def test_an_error_without_a_json_body_still_has_a_code(api: FakeApi, client: JobsClient) -> None:
    api.on("GET", "/stats", lambda r: (502, "<html>Bad gateway</html>", {}))
    with pytest.raises(ServerError) as raised:
        client.stats()
    assert (raised.value.code, raised.value.status) == ("HTTP_502", 502)
    assert "Bad gateway" in raised.value.message


def test_network_errors_are_jobs_connection_errors(api: FakeApi, client: JobsClient) -> None:
    api.fail_with = requests.ConnectionError("connection refused")
    with pytest.raises(JobsConnectionError, match=re.escape("cannot reach http://api.test")):
        client.get("j1")


def test_unknown_fields_from_a_newer_server_are_kept(api: FakeApi, client: JobsClient) -> None:
    api.on("GET", "/jobs/j1", lambda r: (200, job_body("j1", resultUrl="https://files/x"), {}))
    job = client.get("j1")
    assert job.model_extra == {"resultUrl": "https://files/x"}


def test_cancel_matching_sends_the_filters_and_calls_again_while_there_are_more(
    api: FakeApi, client: JobsClient
) -> None:
    # Given an API that cancels 500, then 3 (the last)
    answers = iter([{"cancelled": 500, "more": True}, {"cancelled": 3}])
    api.on("POST", "/jobs/cancel", lambda r: (200, next(answers), {}))
    # When every pending fetch job is cancelled
    assert client.cancel_matching(status="pending", type="fetch") == 503
    # Then both calls sent the filters, and only them
    assert [json.loads(r.body or b"{}") for r in api.requests] == [{"status": "pending", "type": "fetch"}] * 2


def test_pause_resume_and_types(api: FakeApi, client: JobsClient) -> None:
    api.on("POST", "/types/fetch/pause", lambda r: (200, {"type": "fetch", "paused": True}, {}))
    api.on("POST", "/types/fetch/resume", lambda r: (200, {"type": "fetch", "paused": False}, {}))
    api.on("GET", "/types", lambda r: (200, {"types": [{"name": "fetch", "paused": True}]}, {}))
    assert client.pause("fetch") is True
    assert client.resume("fetch") is False
    assert client.types() == [{"name": "fetch", "paused": True}]
