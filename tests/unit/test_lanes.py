"""Lane routing (logic/lanes.py): which lane a message goes to, seen in the SendMessage calls SQS receives from the
lanes' queues behind the router."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.dal.job_queue import Lane, QueueLanes, SqsJobQueue, message_group_id
from functions.logic.lanes import LaneRouter, lane_for
from tests.unit.sqs_stub import BASE, LANES, SENT, message, sent_params


@pytest.fixture
def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def routed(sqs: Any, lanes: QueueLanes = LANES) -> LaneRouter:
    """The queue the use cases send through: the lanes' SQS queues behind the routing rule, threshold 8."""
    return LaneRouter(SqsJobQueue(sqs, lanes), high_priority_threshold=8)


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
