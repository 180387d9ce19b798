"""Lane routing (logic/lanes.py) over the SQS job queue (dal/job_queue.py): which queue a message goes to, with which
FIFO fields, and where dead letters go.

The client is stubbed (botocore's Stubber: the requests are still validated against the SQS service model) and the
parameters of every SendMessage are captured as SQS would receive them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.dal.job_queue import Lane, QueueLanes, SqsJobQueue, message_group_id
from functions.logic.lanes import LaneRouter, lane_for
from functions.models.errors import StorageError
from functions.models.job import JobMessage

BASE = "https://sqs.us-east-1.amazonaws.com/123456789012/"
LANES = QueueLanes(
    normal=BASE + "jobs-queue",
    normal_dlq=BASE + "jobs-dlq",
    high=BASE + "jobs-high",
    high_dlq=BASE + "jobs-high-dlq",
    ordered=BASE + "jobs-ordered.fifo",
    ordered_dlq=BASE + "jobs-ordered-dlq.fifo",
)
ARN = "arn:aws:sqs:us-east-1:123456789012:"
# What SQS accepts as a MessageGroupId: up to 128 of these characters.
SQS_GROUP_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
SENT = {"MessageId": "m-1", "MD5OfMessageBody": "0" * 32}


def message(tenant: str = "acme", job_id: str = "job-1", kind: str = "run") -> JobMessage:
    return JobMessage.model_validate({"tenant": tenant, "jobId": job_id, "kind": kind})


@pytest.fixture
def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def routed(sqs: Any, lanes: QueueLanes = LANES) -> LaneRouter:
    """The queue the use cases send through: the lanes' SQS queues behind the routing rule, threshold 8."""
    return LaneRouter(SqsJobQueue(sqs, lanes), high_priority_threshold=8)


def sent_params(sqs: Any, queue: LaneRouter | SqsJobQueue, call: Any) -> list[dict[str, Any]]:
    """Run ``call`` against the queue and return the parameters of every SendMessage it made (as SQS receives them)."""
    captured: list[dict[str, Any]] = []
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", lambda params, **_: captured.append(params))
    with Stubber(sqs) as stub:
        for _ in range(5):
            stub.add_response("send_message", SENT, None)
        call(queue)
    return captured


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(1, LANES.normal), (7, LANES.normal), (8, LANES.high), (10, LANES.high)],
)
def test_priority_at_or_above_the_threshold_goes_to_the_high_lane(sqs: Any, priority: int, expected: str) -> None:
    # Given the three lanes with threshold 8
    queue = routed(sqs)

    # When a job message of this priority is sent with a delay
    with Stubber(sqs) as stub:
        stub.add_response(
            "send_message",
            SENT,
            {"QueueUrl": expected, "MessageBody": message().to_body(), "DelaySeconds": 3},
        )
        queue.send(message(), 3, priority=priority)

        # Then it went to the lane of its priority, keeping its delay (standard queues allow one)
        stub.assert_no_pending_responses()


def test_a_grouped_job_goes_to_the_fifo_lane_with_a_valid_group_and_a_fresh_dedup_id(sqs: Any) -> None:
    # Given the lanes
    queue = routed(sqs)

    # When two jobs of one group are sent, one of them high priority and with a delay
    params = sent_params(
        sqs,
        queue,
        lambda q: (
            q.send(message(job_id="job-1"), priority=5, group_id="invoices"),
            q.send(message(job_id="job-2"), 30, priority=10, group_id="invoices"),
        ),
    )

    # Then both went to the FIFO queue in one group (the group beats the priority; FIFO takes no DelaySeconds),
    # each with its own deduplication id, so SQS never swallows a re-send
    assert [p["QueueUrl"] for p in params] == [LANES.ordered] * 2
    assert [p["MessageBody"] for p in params] == [message(job_id=j).to_body() for j in ("job-1", "job-2")]
    assert [p["MessageGroupId"] for p in params] == [message_group_id("acme", "invoices")] * 2
    assert params[0]["MessageDeduplicationId"] != params[1]["MessageDeduplicationId"]
    assert all("DelaySeconds" not in p for p in params)


def test_group_ids_fit_sqs_whatever_the_tenant_and_group_and_keep_tenants_apart() -> None:
    # Given the longest groupId the API accepts, made of characters SQS refuses in a group id, and odd tenants
    long_group = "~" * 64 + "x" * 64
    cases = [("acme", long_group), ("tenant with spaces/ü", "g"), ("a#b", "c"), ("a", "b#c")]

    # When their message group ids are computed
    ids = [message_group_id(tenant, group) for tenant, group in cases]

    # Then each is a valid SQS MessageGroupId: the SHA-256 hex of the pair, distinct per (tenant, group)
    assert all(SQS_GROUP_ID.match(group_id) and len(group_id) == 64 for group_id in ids)
    assert len(set(ids)) == len(ids)
    assert ids[0] == hashlib.sha256(f"4:acme#{long_group}".encode()).hexdigest()
    # and the same pair always maps to the same group
    assert message_group_id("acme", "invoices") == message_group_id("acme", "invoices")
    assert message_group_id("acme", "invoices") != message_group_id("other", "invoices")


def test_a_completion_callback_always_goes_to_the_normal_lane(sqs: Any) -> None:
    # Given the lanes
    queue = routed(sqs)

    # When the callback message of a grouped, high-priority job is sent
    params = sent_params(sqs, queue, lambda q: q.send(message(kind="callback"), priority=10, group_id="g"))

    # Then it goes through the normal queue, without FIFO fields
    assert [p["QueueUrl"] for p in params] == [LANES.normal]
    assert "MessageGroupId" not in params[0]


def test_missing_lanes_fall_back_to_the_normal_queue(sqs: Any) -> None:
    # Given a deployment with the normal lane only
    queue = routed(sqs, QueueLanes(BASE + "jobs-queue", BASE + "jobs-dlq"))

    # When a high-priority job and a grouped one are sent
    params = sent_params(
        sqs, queue, lambda q: (q.send(message(), priority=10), q.send(message(), 5, group_id="invoices"))
    )

    # Then both use the normal queue as plain messages (the grouped one keeps its delay)
    assert [p["QueueUrl"] for p in params] == [LANES.normal, LANES.normal]
    assert all("MessageGroupId" not in p for p in params)
    assert params[1]["DelaySeconds"] == 5
    assert queue.lane_for(message(), 10, "invoices") == Lane.NORMAL


def test_delays_are_clipped_to_what_sqs_allows(sqs: Any) -> None:
    # Given the lanes
    queue = routed(sqs)

    # When messages are sent with a negative and a too-long delay
    params = sent_params(sqs, queue, lambda q: (q.send(message(), -5), q.send(message(), 5000)))

    # Then SQS gets 0 and 900 seconds
    assert [p["DelaySeconds"] for p in params] == [0, 900]


@pytest.mark.parametrize(
    ("source_arn", "expected_dlq", "fifo"),
    [
        (ARN + "jobs-queue", LANES.normal_dlq, False),
        (ARN + "jobs-high", LANES.high_dlq, False),
        (ARN + "jobs-ordered.fifo", LANES.ordered_dlq, True),
        ("", LANES.normal_dlq, False),
    ],
    ids=["normal", "high", "ordered", "unknown-source"],
)
def test_dead_letters_go_to_the_dlq_of_the_lane_they_came_from(
    sqs: Any, source_arn: str, expected_dlq: str, fifo: bool
) -> None:
    # Given the lanes
    queue = routed(sqs)

    # When a message received from a lane is dead-lettered
    params = sent_params(sqs, queue, lambda q: q.dead_letter("{}", "failed: boom", source_arn=source_arn))

    # Then it lands in that lane's DLQ with its reason (a FIFO DLQ needs a group and a dedup id)
    assert [p["QueueUrl"] for p in params] == [expected_dlq]
    assert params[0]["MessageAttributes"]["reason"]["StringValue"] == "failed: boom"
    assert ("MessageGroupId" in params[0]) is fifo
    assert ("MessageDeduplicationId" in params[0]) is fifo


def test_an_sqs_error_becomes_a_storage_error(sqs: Any) -> None:
    # Given SQS refusing the send
    queue = routed(sqs)
    with Stubber(sqs) as stub:
        stub.add_client_error("send_message", service_error_code="AWS.SimpleQueueService.NonExistentQueue")

        # When a grouped job is sent, then the caller sees a StorageError (the sweeper re-sends it later)
        with pytest.raises(StorageError, match="SendMessage"):
            queue.send(message(), group_id="invoices")


@pytest.mark.parametrize(
    ("kind", "priority", "group_id", "available", "expected"),
    [
        ("run", 5, "g", {Lane.NORMAL, Lane.HIGH, Lane.ORDERED}, Lane.ORDERED),
        ("run", 10, "g", {Lane.NORMAL, Lane.HIGH, Lane.ORDERED}, Lane.ORDERED),
        ("run", 10, "g", {Lane.NORMAL, Lane.HIGH}, Lane.HIGH),
        ("run", 9, None, {Lane.NORMAL, Lane.HIGH}, Lane.HIGH),
        ("run", 8, None, {Lane.NORMAL, Lane.HIGH}, Lane.HIGH),
        ("run", 7, None, {Lane.NORMAL, Lane.HIGH}, Lane.NORMAL),
        ("run", 10, None, {Lane.NORMAL}, Lane.NORMAL),
        ("callback", 10, "g", {Lane.NORMAL, Lane.HIGH, Lane.ORDERED}, Lane.NORMAL),
    ],
)
def test_the_lane_rule_group_first_then_priority_and_only_lanes_that_exist(
    kind: str, priority: int, group_id: str | None, available: set[Lane], expected: Lane
) -> None:
    # Given a message, when its lane is decided with threshold 8, then it is the rule's lane among those deployed
    chosen = lane_for(message(kind=kind), priority, group_id, high_priority_threshold=8, available=available)
    assert chosen == expected


def test_the_sqs_queue_sends_to_the_lane_it_is_told_whatever_the_message(sqs: Any) -> None:
    # Given the lanes' queues without routing
    queue = SqsJobQueue(sqs, LANES)

    # When a message is sent to each lane
    params = sent_params(
        sqs,
        queue,
        lambda q: (
            q.send(message(), lane=Lane.HIGH),
            q.send(message(), 4, lane=Lane.NORMAL),
            q.send(message(), lane=Lane.ORDERED, group_id="g"),
        ),
    )

    # Then each went to that lane's queue
    assert [p["QueueUrl"] for p in params] == [LANES.high, LANES.normal, LANES.ordered]
    assert queue.available_lanes() == {Lane.NORMAL, Lane.HIGH, Lane.ORDERED}
    # and the ordered lane refuses a message without its group
    with pytest.raises(ValueError, match="group"):
        queue.send(message(), lane=Lane.ORDERED)
