"""``batch-import``: payload validation, chunking, re-sending unprocessed items, and error classification."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.batch_import import (
    BACKOFF_CAP_SECONDS,
    MAX_TRIES,
    BatchImportPayload,
    batch_import,
    write_items,
)
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError
from functions.settings import Settings

TABLE = "imports"


class FakeDynamo:
    """BatchWriteItem that stores puts, optionally leaving some unprocessed or failing."""

    def __init__(self, unprocessed: list[int] | None = None, error: Exception | None = None) -> None:
        # unprocessed[n]: how many items of the n-th call to hand back as unprocessed
        self.unprocessed = list(unprocessed or [])
        self.error = error
        self.calls: list[list[dict[str, Any]]] = []
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        requests = RequestItems[TABLE]
        assert 1 <= len(requests) <= 25
        self.calls.append(requests)
        keep = self.unprocessed.pop(0) if self.unprocessed else 0
        done, left = requests[: len(requests) - keep], requests[len(requests) - keep :]
        for request in done:
            item = request["PutRequest"]["Item"]
            self.items[(item["pk"]["S"], item["sk"]["S"])] = item
        return {"UnprocessedItems": {TABLE: left} if left else {}}


def _items(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item {i}", "price": i + 0.1} for i in range(count)]


def _parse(payload: dict[str, Any]) -> BatchImportPayload:
    parsed = get_job_type("batch-import").parse_payload(payload)
    assert isinstance(parsed, BatchImportPayload)
    return parsed


def _write(client: FakeDynamo, items: list[dict[str, Any]], sleeps: list[float] | None = None) -> dict[str, int]:
    return write_items(
        client,
        TABLE,
        "acme#products",
        items,
        "job-1",
        sleep=(sleeps if sleeps is not None else []).append,
        rng=random.Random(7),
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


# --- validation ---


@pytest.mark.parametrize(
    "payload",
    [
        {"namespace": "products", "items": []},
        {"namespace": "products", "items": _items(1001)},
        {"namespace": "", "items": _items(1)},
        {"namespace": "a/b", "items": _items(1)},
        {"namespace": "x" * 65, "items": _items(1)},
        {"namespace": "p", "items": [{"name": "no id"}]},
        {"namespace": "p", "items": [{"id": True}]},
        {"namespace": "p", "items": [{"id": 1.5}]},
        {"namespace": "p", "items": [{"id": None}]},
        {"namespace": "p", "items": [{"id": ""}]},
        {"namespace": "p", "items": [{"id": "x" * 513}]},
        {"namespace": "p", "items": [{"id": 1}, {"id": 2}, {"id": 1}]},
        {"namespace": "p", "items": [{"id": 1}, {"id": "1"}]},
        {"namespace": "p", "items": [{"id": 1, "v": float("nan")}]},
        {"namespace": "p", "items": [{"id": 1, "blob": "x" * 400_000}]},
        {"namespace": "p", "items": ["not an object"]},
        {"namespace": "p", "items": _items(1), "extra": 1},
    ],
)
def test_invalid_payloads_are_rejected_at_enqueue(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        _parse(payload)


def test_duplicate_ids_are_named_in_the_error() -> None:
    with pytest.raises(InvalidPayload) as caught:
        _parse({"namespace": "p", "items": [{"id": "a"}, {"id": "b"}, {"id": "a"}]})
    assert "items[2].id 'a' repeats items[0].id" in caught.value.details[0]["message"]


def test_a_thousand_items_with_string_and_integer_ids_are_accepted() -> None:
    items = [{"id": i} if i % 2 else {"id": f"s{i}"} for i in range(1000)]
    assert len(_parse({"namespace": "my.ns_1-a", "items": items}).items) == 1000


# --- writing ---


def test_items_are_written_in_chunks_of_25_as_json_strings_under_tenant_and_namespace() -> None:
    # Given 60 items, one with a float and a nested object
    items = _items(60)
    items[0] = {"id": "first", "price": 0.1, "tags": ["a"], "nested": {"x": 1.25}}
    client = FakeDynamo()
    # When they are written
    counts = _write(client, items)
    # Then three calls carried 25, 25 and 10 puts, and every item is stored under its key
    assert [len(call) for call in client.calls] == [25, 25, 10]
    assert counts == {"written": 60, "batches": 3, "retries": 0}
    stored = client.items[("acme#products", "first")]
    assert json.loads(stored["item"]["S"]) == items[0]
    assert stored["updatedAt"] == {"S": "2026-01-02T03:04:05.000Z"}
    assert stored["jobId"] == {"S": "job-1"}
    assert ("acme#products", "59") in client.items


def test_unprocessed_items_are_re_sent_after_a_backoff() -> None:
    # Given DynamoDB leaves 10 items of the first call and 3 of the second unprocessed
    client = FakeDynamo(unprocessed=[10, 3])
    sleeps: list[float] = []
    # When 30 items are written
    counts = _write(client, _items(30), sleeps)
    # Then exactly the unprocessed items were sent again, after a bounded wait, and all were written
    assert [len(call) for call in client.calls] == [25, 10, 3, 5]
    assert client.calls[1] == client.calls[0][15:]
    assert counts == {"written": 30, "batches": 2, "retries": 2}
    assert len(sleeps) == 2 and all(0 <= s <= BACKOFF_CAP_SECONDS for s in sleeps)
    assert len(client.items) == 30


def test_items_still_unprocessed_after_the_last_try_fail_the_attempt_as_retryable() -> None:
    # Given DynamoDB that never processes one of the items
    client = FakeDynamo(unprocessed=[1] * 100)
    sleeps: list[float] = []
    # When they are written
    with pytest.raises(RetryableJobError, match="still unprocessed"):
        _write(client, _items(5), sleeps)
    # Then it gave up after MAX_TRIES calls, having waited a bounded time
    assert len(client.calls) == MAX_TRIES
    assert len(sleeps) == MAX_TRIES - 1
    assert sum(sleeps) <= BACKOFF_CAP_SECONDS * MAX_TRIES


def test_writing_the_same_items_again_overwrites_them() -> None:
    client = FakeDynamo()
    _write(client, _items(30))
    _write(client, [{**item, "name": "changed"} for item in _items(30)])
    assert len(client.items) == 30
    assert all(json.loads(item["item"]["S"])["name"] == "changed" for item in client.items.values())


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "BatchWriteItem"
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("Unknown", 503),
    ],
)
def test_throttling_and_server_errors_are_retryable(code: str, status: int) -> None:
    with pytest.raises(RetryableJobError, match=code):
        _write(FakeDynamo(error=_client_error(code, status)), _items(1))


@pytest.mark.parametrize(
    ("code", "status"),
    [("ValidationException", 400), ("ResourceNotFoundException", 400), ("AccessDeniedException", 400)],
)
def test_request_errors_are_permanent(code: str, status: int) -> None:
    with pytest.raises(PermanentJobError, match=code):
        _write(FakeDynamo(error=_client_error(code, status)), _items(1))


def test_the_handler_uses_the_tenant_the_imports_table_and_reports_progress() -> None:
    # Given a context for tenant "acme" whose settings name the imports table
    client = FakeDynamo()
    progress: list[float] = []
    ctx = JobContext(
        job_id="job-9",
        tenant="acme",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(imports_table=TABLE),
        client=lambda service: client,
        report_progress=lambda percent, message="": progress.append(percent),
    )
    # When the job runs
    result = batch_import(_parse({"namespace": "products", "items": _items(50)}), ctx)
    # Then the items sit under acme#products and the result counts them
    assert result == {"namespace": "products", "written": 50, "batches": 2, "retries": 0}
    assert {pk for pk, _ in client.items} == {"acme#products"}
    assert progress == [50.0, 100.0]
