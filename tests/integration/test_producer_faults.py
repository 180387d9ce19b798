"""Producer faults: DynamoDB or SQS throttled or failing while jobs are accepted.

A 202 must mean the job will end final; anything else must leave nothing half-written, or a state the sweeper
heals. The API answers 503 UNAVAILABLE for storage failures, never 500 and never a misleading 409.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.dal.clients import client
from functions.logic.clock import system_clock
from tests.integration.harness import Service, ok_job

FAULTS = {
    "throttled": ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "TransactWriteItems"
    ),
    "transaction throttled": ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}],
        },
        "TransactWriteItems",
    ),
    "unreachable": EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
}


def _fail(service_name: str, operation: str, error: Exception, times: int | None = None) -> Callable[[], None]:
    """Make the functions' ``operation`` calls raise ``error`` (``times`` times, or until undone)."""
    left = [times]

    def refuse(**_: Any) -> None:
        if left[0] is None or left[0] > 0:
            if left[0] is not None:
                left[0] -= 1
            raise error

    events = client(service_name).meta.events
    events.register(f"before-call.{service_name}.{operation}", refuse, unique_id=f"producer-fault-{operation}")
    return lambda: events.unregister(f"before-call.{service_name}.{operation}", unique_id=f"producer-fault-{operation}")


@pytest.fixture
def undo() -> Iterator[list[Callable[[], None]]]:
    steps: list[Callable[[], None]] = []
    yield steps
    for step in steps:
        step()


def _job_items(service: Service) -> list[dict[str, Any]]:
    items = service.dynamodb.scan(TableName=service.settings.jobs_table)["Items"]
    return [item for item in items if "type" in item]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_write_on_enqueue_is_503_and_leaves_nothing(
    service: Service, fault: str, undo: list[Callable[[], None]]
) -> None:
    # Given DynamoDB refusing writes (a plain job is one PutItem; a keyed job or a batch, a transaction)
    undo.append(_fail("dynamodb", "TransactWriteItems", FAULTS[fault]))
    undo.append(_fail("dynamodb", "PutItem", FAULTS[fault]))

    # When a job, a keyed job and a batch are posted
    for path, body in (
        ("/jobs", ok_job()),
        ("/jobs", ok_job(idempotencyKey="k-503")),
        ("/jobs/batch", {"jobs": [ok_job(), ok_job()]}),
    ):
        status, answer, _ = service.api("POST", path, body)
        # Then each is 503 UNAVAILABLE
        assert (status, answer["code"]) == (503, "UNAVAILABLE"), (path, answer)

    # And no record, counter or message exists
    assert _job_items(service) == []
    assert service.stats()["enqueued"] == 0
    assert service.queue_is_empty()


def test_a_keyed_request_retried_after_a_503_is_accepted_once(service: Service, undo: list[Callable[[], None]]) -> None:
    # Given one throttled write, then a healthy table
    undo.append(_fail("dynamodb", "TransactWriteItems", FAULTS["transaction throttled"], times=1))
    body = ok_job(idempotencyKey="retry-after-503")

    # When the client retries its keyed request until it is accepted, then once more
    first, _, _ = service.api("POST", "/jobs", body)
    second, job, _ = service.api("POST", "/jobs", body)
    third, again, _ = service.api("POST", "/jobs", body)

    # Then one job exists: 503, then 202, then 200 with that job
    assert (first, second, third) == (503, 202, 200)
    assert again["id"] == job["id"] and len(_job_items(service)) == 1


def test_an_sqs_outage_on_enqueue_is_accepted_and_healed_by_the_sweeper(
    service: Service, undo: list[Callable[[], None]]
) -> None:
    # Given SQS throttling every send
    undo.append(
        _fail("sqs", "SendMessage", ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "Send"))
    )

    # When a job and a batch are posted
    status, job, _ = service.api("POST", "/jobs", ok_job())
    batch_status, batch, _ = service.api("POST", "/jobs/batch", {"jobs": [ok_job(), ok_job()]})

    # Then both are accepted (the records exist, with sweep marks), though no message went out
    assert (status, batch_status) == (202, 202)
    assert service.queue_is_empty()

    # And once SQS is back, the sweeper (after the grace) sends them and they complete
    for step in undo:
        step()
    undo.clear()
    later = system_clock() + (service.settings.pending_grace_seconds + 1) * 1000
    report = service.sweep(clock=lambda: later)
    assert report.resent == 3
    service.drain()
    assert service.job(job["id"])["status"] == "completed"
    assert service.api("GET", f"/batches/{batch['id']}")[1]["status"] == "completed"


def test_a_batch_whose_second_chunk_fails_is_503_and_its_first_chunk_still_ends_final(
    service: Service, undo: list[Callable[[], None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch big enough for two write chunks, and DynamoDB failing from the second write on
    from functions.dal.jobs_repository import records

    monkeypatch.setattr(records, "_CREATE_CHUNK_JOBS", 3)
    calls = {"n": 0}

    def second_fails(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= 2:
            raise FAULTS["throttled"]

    events = client("dynamodb").meta.events
    events.register("before-call.dynamodb.TransactWriteItems", second_fails, unique_id="second-chunk")
    undo.append(lambda: events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="second-chunk"))

    # When it is posted
    status, answer, _ = service.api("POST", "/jobs/batch", {"jobs": [ok_job(f"{i}.png") for i in range(6)]})

    # Then the answer is 503, and whatever was written carries sweep marks, so it is sent and ends final
    assert (status, answer["code"]) == (503, "UNAVAILABLE")
    for step in undo:
        step()
    undo.clear()
    written = _job_items(service)
    assert len(written) == 3  # the first chunk
    later = system_clock() + (service.settings.pending_grace_seconds + 1) * 1000
    service.sweep(clock=lambda: later)
    service.drain()
    for item in written:
        assert service.job(item["id"]["S"])["status"] == "completed"
