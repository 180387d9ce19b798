"""Property tests (hypothesis) on the request validators: whatever JSON-ish input they get, they either return a
valid spec or raise an ``ApiError`` (a 4xx with a stable code), never any other exception (which would be a 500);
and what they accept is within the documented bounds.

``parse_type_limits`` checks configuration, not a request: its one error is ``InvalidTypeLimits``.

Deterministic (derandomized, no example database) and modest in size, so they fit in ``make test``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from functions.adapters.net import check_url
from functions.dal.jobs_repository import DynamoJobsRepository
from functions.logic.batches import BATCH_ID_PLACEHOLDER, MAX_BATCH_JOBS, BatchRequest, parse_batch_request
from functions.logic.enqueue import ENQUEUE_FIELDS, JobSpec, parse_job_spec
from functions.logic.job_types import get_job_type, registered_types
from functions.logic.limits import (
    MAX_CONCURRENCY,
    MAX_RATE_PER_SECOND,
    InvalidTypeLimits,
    TypeLimit,
    parse_type_limits,
    rate_window,
)
from functions.logic.manage import list_jobs
from functions.logic.waiting import MAX_WAIT_SECONDS, parse_wait
from functions.models.bounds import CALLBACK_URL_MAX_LENGTH as MAX_CALLBACK_URL_LENGTH
from functions.models.bounds import DELAY_SECONDS_MAX as MAX_DELAY_OPTION_SECONDS
from functions.models.bounds import GROUP_ID_MAX_LENGTH as MAX_GROUP_ID_LENGTH
from functions.models.bounds import IDEMPOTENCY_KEY_MAX_LENGTH as MAX_IDEMPOTENCY_KEY_LENGTH
from functions.models.errors import ApiError
from functions.models.job import JobStatus
from functions.settings import Settings

PROPERTY = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(PROPERTY, max_examples=100)

NOW = 1_795_000_000_000  # 2026-11-18, ms


# Every type is available: the functions' settings name a sender (without one, send-email is INVALID_TYPE).
WITH_A_SENDER = Settings(email_sender="jobs@example.com")


YEAR_MS = MAX_DELAY_OPTION_SECONDS * 1000
PRINTABLE = re.compile(r"[\x21-\x7e]+")
TYPES = registered_types()

# --- strategies: JSON as the API reads it. Bodies are parsed refusing NaN and Infinity, but "\ud800" in a JSON
# string is an unpaired surrogate, which Python's json accepts: such strings are generated too.

strings = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfff", "\U0001f600", "\x00"])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=4),
    max_leaves=10,
)
# Values that get past type checks and reach the interesting branches of the validators
PLAUSIBLE: list[Any] = [
    "cat.png",
    "uploads/t/cat.png",
    "https://example.com/a",
    "http://example.com:0/",
    "http://[::1",
    "http://user:pw@example.com/",
    "https://exämple.com/",
    "ftp://example.com/",
    "resize",
    "fetch",
    "POST",
    "a@example.com",
    "not-an-email",
    "hello",
    "",
    " ",
    " padded ",
    "\ud800",
    "line\n",
    "$batchId",
    0,
    1,
    -1,
    3,
    50,
    100,
    0.5,
    1.5,
    1e300,
    True,
    False,
    None,
    [],
    {},
    ["a@example.com"],
    {"k": "v"},
    {"\ud800": "v"},
    [{"id": 1}],
]
plausible = st.sampled_from(PLAUSIBLE) | json_values


def _payload_keys() -> list[str]:
    keys: set[str] = {"extra"}
    for name in TYPES:
        for field_name, info in get_job_type(name).payload_model.model_fields.items():
            keys.update({field_name, info.alias or field_name})
    return sorted(keys)


PAYLOAD_KEYS = _payload_keys()

payloads = st.dictionaries(st.sampled_from(PAYLOAD_KEYS), plausible, max_size=6)
# A valid payload of every type: the starting points of the per-type property, and of many generated bodies
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "batch-import": {"namespace": "ns", "items": [{"id": 1}]},
    "crawl-website": {"url": "https://example.com/"},
    "fetch": {"url": "https://example.com/"},
    "generate-content": {"prompt": "hi"},
    "generate-embedding": {"text": "hi"},
    "image-grayscale": {"key": "uploads/t/cat.png"},
    "image-resize": {"key": "uploads/t/cat.png", "width": 10},
    "message": {"message": "hello"},
    "send-email": {"to": ["a@example.com"], "subject": "s", "body": "b"},
    "simulate": {"target": "cat.png", "failureRate": 0, "durationMs": 10},
    "webhook-delivery": {"url": "https://example.com/hook", "body": {"a": [1, 2]}},
}
# Values for one field of an otherwise valid payload: wrong types, edges, text that is not valid Unicode
ODD_VALUES: list[Any] = [None, "", "\ud800", {"\ud800": "v"}, {"k": "\ud800"}, ["\ud800"], [], {}, -1, 0, 10**20]
ODD_VALUES += [1e300, 0.5, True, "x" * 5000, [{"\ud800": 1}], "https://example.com/", "a@example.com"]

timestamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.none() | st.just(UTC) | st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
)
near_now = st.integers(-2 * YEAR_MS, 2 * YEAR_MS).map(lambda offset: datetime.fromtimestamp((NOW + offset) / 1000, UTC))
run_ats = (timestamps | near_now).map(lambda moment: moment.isoformat()) | st.text(max_size=30) | plausible
ints_near_bounds = st.sampled_from(
    [-1, 0, 1, 2, 10, 11, 25, 26, MAX_DELAY_OPTION_SECONDS, MAX_DELAY_OPTION_SECONDS + 1]
)
# (NaN and Infinity cannot reach the options through the API, but the checks refuse them anyway)
int_options = ints_near_bounds | ints_near_bounds.map(float) | st.floats(-1, 30) | st.just(math.nan) | plausible
texts = (
    st.sampled_from(
        [
            *["line\n", "\nline", "a b", "tab\t", "caf\u00e9", "del\x7f", "", "a" * MAX_GROUP_ID_LENGTH],
            *[
                "a" * (MAX_GROUP_ID_LENGTH + 1),
                "k" * MAX_IDEMPOTENCY_KEY_LENGTH,
                "k" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1),
            ],
        ]
    )
    | st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=12)
    | plausible
)
urls = (
    st.sampled_from(["https://", "http://", "HTTP://", "https://example.com/", "http://10.0.0.1:8080/"]).flatmap(
        lambda prefix: st.text(max_size=20).map(lambda rest: prefix + rest)
    )
    | st.just("https://example.com/" + "a" * MAX_CALLBACK_URL_LENGTH)
    | plausible
)


good_options: dict[str, st.SearchStrategy[Any]] = {
    "priority": st.integers(1, 10),
    "maxAttempts": st.integers(1, 25),
    "delaySeconds": st.integers(0, MAX_DELAY_OPTION_SECONDS),
    "runAt": near_now.map(lambda moment: moment.isoformat()),
    "groupId": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
    "idempotencyKey": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
    "callbackUrl": st.sampled_from(["https://example.com/cb", "http://10.0.0.1:8080/x?y=1"]),
}
any_options: dict[str, st.SearchStrategy[Any]] = {
    "priority": int_options,
    "maxAttempts": int_options,
    "delaySeconds": int_options,
    "runAt": run_ats,
    "groupId": texts,
    "idempotencyKey": texts,
    "callbackUrl": urls,
}


@st.composite
def job_bodies(draw: st.DrawFn) -> Any:
    """A POST /jobs body: often a valid one with a field or two pushed to or past its bounds, else anything."""
    if draw(st.integers(0, 2)) > 0:
        job_type = draw(st.sampled_from(sorted(VALID_PAYLOADS)))
        body: dict[str, Any] = {"type": job_type, "payload": dict(VALID_PAYLOADS[job_type])}
    else:
        job_type = draw(st.sampled_from(TYPES) | plausible)
        body = {"type": job_type}
        if draw(st.booleans()):
            body["payload"] = draw(payloads | plausible)
    # Some options within their bounds, and at most one of them anything
    names = sorted(draw(st.sets(st.sampled_from(sorted(any_options)), max_size=3)))
    odd = draw(st.sampled_from([None, *names]))
    for name in names:
        body[name] = draw(any_options[name] if name == odd else good_options[name])
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=6))] = draw(plausible)
    return draw(st.just(body) | st.just(body) | st.just(body) | json_values)


# --- what an accepted spec must satisfy ---


def _strict_json(value: Any) -> str:
    """JSON as the repository stores it (ASCII, so even an unpaired surrogate survives), and no NaN/Infinity."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _is_option_text(value: str | None, max_length: int) -> bool:
    return value is None or (1 <= len(value) <= max_length and PRINTABLE.fullmatch(value) is not None)


def assert_valid_spec(spec: JobSpec, now: int, *, in_batch: bool = False) -> None:
    assert spec.type in TYPES
    assert 1 <= spec.priority <= 10
    assert 1 <= spec.max_attempts <= 25
    assert spec.run_at_ms is None or now < spec.run_at_ms <= now + YEAR_MS
    assert _is_option_text(spec.group_id, MAX_GROUP_ID_LENGTH), spec.group_id
    assert _is_option_text(spec.idempotency_key, MAX_IDEMPOTENCY_KEY_LENGTH), spec.idempotency_key
    if in_batch:
        assert spec.idempotency_key is None
    if spec.callback_url is not None:
        assert len(spec.callback_url) <= MAX_CALLBACK_URL_LENGTH
        check_url(spec.callback_url)
    # The payload is stored as JSON and parsed again by the consumer with the same model: it must come back the same.
    assert isinstance(spec.payload, dict)
    stored = json.loads(_strict_json(spec.payload))
    model = get_job_type(spec.type).payload_model
    assert model.model_validate(stored).model_dump(mode="json", by_alias=True) == spec.payload


# --- parse_job_spec ---


@PROPERTY
@given(body=job_bodies(), header=st.none() | texts, now=st.integers(NOW - YEAR_MS, NOW + YEAR_MS))
def test_parse_job_spec_returns_a_valid_spec_or_raises_an_api_error(body: Any, header: Any, now: int) -> None:
    # Given any JSON value as the body, and any Idempotency-Key header
    # When it is parsed
    try:
        spec = parse_job_spec(body, now, header, WITH_A_SENDER)
    except ApiError as error:
        event(f"refused: {error.code}")
        # Then it is refused with a 4xx and a stable code
        assert 400 <= error.status_code < 500 and error.code.isupper()
        return
    # Or the spec is within every documented bound
    event("accepted")
    assert_valid_spec(spec, now)
    assert isinstance(body, dict) and set(body) <= ENQUEUE_FIELDS


def _fields(job_type: str) -> list[str]:
    model = get_job_type(job_type).payload_model
    return sorted({info.alias or name for name, info in model.model_fields.items()})


def test_every_type_has_a_valid_payload_to_start_from() -> None:
    assert sorted(VALID_PAYLOADS) == TYPES


def _check_payload(job_type: str, payload: dict[str, Any]) -> None:
    try:
        spec = parse_job_spec({"type": job_type, "payload": payload}, NOW, settings=WITH_A_SENDER)
    except ApiError as error:
        # Refused with INVALID_PAYLOAD (nothing else is wrong with the body)
        assert (error.status_code, error.code) == (400, "INVALID_PAYLOAD"), payload
        return
    # Or a valid spec whose payload comes back the same from storage
    assert_valid_spec(spec, NOW)


@pytest.mark.parametrize("job_type", TYPES)
def test_each_type_takes_any_odd_value_in_any_field_without_crashing(job_type: str) -> None:
    # Given a valid payload of this type with one field missing, or set to each of the odd values in turn
    for name in [*_fields(job_type), "extra"]:
        payloads = [{key: value for key, value in VALID_PAYLOADS[job_type].items() if key != name}]
        payloads += [{**VALID_PAYLOADS[job_type], name: value} for value in ODD_VALUES]
        for payload in payloads:
            # When it is parsed, Then it is a valid spec or INVALID_PAYLOAD
            _check_payload(job_type, payload)


@st.composite
def odd_payloads(draw: st.DrawFn, job_type: str) -> dict[str, Any]:
    """A valid payload of ``job_type`` with one or two fields set to any JSON value, or one added."""
    payload = dict(VALID_PAYLOADS[job_type])
    for name in draw(st.lists(st.sampled_from([*_fields(job_type), "extra"]), min_size=1, max_size=2)):
        payload[name] = draw(json_values)
    return payload


@pytest.mark.parametrize("job_type", TYPES)
@settings(PROPERTY, max_examples=40)
@given(data=st.data())
def test_each_type_accepts_its_payload_or_refuses_it_with_invalid_payload(job_type: str, data: st.DataObject) -> None:
    # Given a payload of this type with a field or two set to any JSON value
    # When a job of the type is parsed, Then it is a valid spec or INVALID_PAYLOAD
    _check_payload(job_type, data.draw(odd_payloads(job_type)))


# --- parse_batch_request ---


@st.composite
def batch_bodies(draw: st.DrawFn) -> Any:
    jobs = draw(
        st.lists(job_bodies(), min_size=0, max_size=4)
        | st.sampled_from([0, 1, MAX_BATCH_JOBS, MAX_BATCH_JOBS + 1]).map(
            lambda n: [{"type": "message", "payload": {"message": "hi"}}] * n
        )
        | plausible
    )
    body: dict[str, Any] = {"jobs": jobs}
    if draw(st.booleans()):
        body["onComplete"] = draw(
            job_bodies() | st.just({"type": "message", "payload": {"message": BATCH_ID_PLACEHOLDER}}) | plausible
        )
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=6))] = draw(plausible)
    return draw(st.just(body) | st.just(body) | st.just(body) | json_values)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


@PROPERTY
@given(body=batch_bodies())
def test_parse_batch_request_returns_valid_specs_or_raises_an_api_error(body: Any) -> None:
    # Given any JSON value as a batch's body
    # When it is parsed
    try:
        request = parse_batch_request(body, NOW, "batch-1", WITH_A_SENDER)
    except ApiError as error:
        # Then it is refused with a 4xx and a stable code
        assert 400 <= error.status_code < 500 and error.code.isupper()
        return
    # Or 1 to 100 valid specs (no idempotency key in a batch), and a valid onComplete whose "$batchId" became the id
    assert isinstance(request, BatchRequest)
    assert 1 <= len(request.specs) <= MAX_BATCH_JOBS
    for spec in request.specs:
        assert_valid_spec(spec, NOW, in_batch=True)
    if request.on_complete is not None:
        on_complete = request.on_complete
        assert_valid_spec(on_complete.spec, NOW, in_batch=True)
        assert 0 <= on_complete.delay_ms <= YEAR_MS
        assert on_complete.delay_ms == 0 or on_complete.spec.run_at_ms is None
        assert BATCH_ID_PLACEHOLDER not in _strings(on_complete.spec.payload)


# --- parse_wait ---

query_texts = (
    st.text(max_size=6)
    | st.integers(-5, 10**30).map(str)
    | st.sampled_from(["", "0", "20", "21", "07", "²", "\u0661", "1.5", " 1", "1e1", "+1", "-0"])
)


@PROPERTY
@given(query=st.dictionaries(st.sampled_from(["wait", "other", ""]), query_texts, max_size=3))
def test_parse_wait_returns_0_to_20_seconds_or_raises_an_api_error(query: dict[str, str]) -> None:
    # Given any query string
    try:
        wait = parse_wait(query)
    except ApiError as error:
        # Then a bad wait is refused with INVALID_QUERY
        assert (error.status_code, error.code) == (400, "INVALID_QUERY")
        return
    # Or it is whole seconds from 0 to 20, the ones asked for
    assert 0 <= wait <= MAX_WAIT_SECONDS and wait == int(wait)
    assert wait == (int(query["wait"]) if query.get("wait") else 0)


# --- list_jobs' query ---


class _EmptyIndex:
    """A DynamoDB client whose queries find nothing; it records what it was asked."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.queries.append(kwargs)
        return {"Items": []}


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


TENANT = "tenant-a"
cursors = (
    query_texts
    | st.sampled_from(
        [
            _cursor({"i": "by-tenant", "p": TENANT, "after": "2026-01-01T00:00:00.000Z#j1"}),
            _cursor({"i": "by-tenant", "p": "other", "after": "x"}),
            _cursor({"i": "by-status", "p": f"{TENANT}#pending", "after": "2026-01-01T00:00:00.000Z#j1"}),
            _cursor(["not", "a", "key"]),
            _cursor({"pk": 1}),
            _cursor("[" * 5000),
            "!!!",
            "e30",
        ]
    )
    | json_values.map(_cursor)
)
list_queries = st.dictionaries(
    st.sampled_from(["status", "type", "limit", "cursor", "other"]),
    st.sampled_from([s.value for s in JobStatus]) | st.sampled_from(TYPES) | query_texts | cursors,
    max_size=4,
)


@PROPERTY
@given(query=list_queries)
def test_list_jobs_reads_a_bounded_page_or_raises_an_api_error(query: dict[str, str]) -> None:
    # Given any query string for GET /jobs, against the DynamoDB repository (its cursor checks are the real ones)
    client = _EmptyIndex()
    repo = DynamoJobsRepository(client, "jobs", "stats", 1, 1, listing_shards=1, throughput_shards=1)
    try:
        page = list_jobs(repo, TENANT, query)
    except ApiError as error:
        # Then a bad query is refused with INVALID_QUERY
        assert (error.status_code, error.code) == (400, "INVALID_QUERY")
        assert client.queries == [] or "cursor" in query
        return
    # Or exactly one bounded read of this tenant's partition
    assert page.jobs == [] and page.next_cursor is None
    assert len(client.queries) == 1
    asked = client.queries[0]
    assert 1 <= asked["Limit"] <= 100
    assert asked["ExpressionAttributeValues"][":p"]["S"].split("#", 1)[0] == TENANT
    assert asked["Limit"] == (int(query["limit"]) if "limit" in query else 50)


# --- parse_type_limits ---

limit_values = (
    st.sampled_from(
        [
            *[0, 1, 2, 0.5, 0.25, 1 / 3, 0.001, 1e-9, 7.5, MAX_RATE_PER_SECOND, MAX_RATE_PER_SECOND + 0.5, 10**20],
            *[MAX_CONCURRENCY, MAX_CONCURRENCY + 1, -1, "tenant", "global", "Global", math.nan, math.inf, True],
        ]
    )
    | st.floats(0, 2000)
    | plausible
)
limit_entries = st.dictionaries(
    st.sampled_from(["ratePerSecond", "concurrency", "scope", "other"]), limit_values, max_size=3
)
limit_configs = st.dictionaries(st.sampled_from([*TYPES, "nope"]) | st.text(max_size=5), limit_entries | plausible)
raw_limits = limit_configs.map(json.dumps) | st.text(max_size=20) | json_values.map(json.dumps)


@SMALL
@given(raw=raw_limits, known=st.none() | st.just(TYPES))
def test_parse_type_limits_returns_valid_limits_or_raises_invalid_type_limits(raw: str, known: Any) -> None:
    # Given any text as the type_limits setting
    try:
        limits = parse_type_limits(raw, known)
    except InvalidTypeLimits:
        # Then a bad one is refused with the configuration error (the consumer logs it and runs nothing)
        return
    # Or every entry is a limit within the bounds, on a known type when the types are given
    for name, limit in limits.items():
        assert isinstance(limit, TypeLimit)
        assert known is None or name in known
        assert limit.rate_per_second is not None or limit.concurrency is not None
        if limit.rate_per_second is not None:
            assert 0 < limit.rate_per_second <= MAX_RATE_PER_SECOND
            assert rate_window(limit.rate_per_second) is not None
        if limit.concurrency is not None:
            assert type(limit.concurrency) is int and 1 <= limit.concurrency <= MAX_CONCURRENCY
        assert limit.scope in ("tenant", "global")
