"""The SQS job queue (dal/job_queue.py): a message goes to the lane it is told, with valid FIFO fields on the
ordered lane; delays within SQS's bounds; dead letters to the DLQ of the lane they came from; SQS errors wrapped."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.dal.job_queue import Lane, SqsJobQueue, message_group_id
from functions.models.errors import StorageError
from tests.unit.sqs_stub import ARN, LANES, message, sent_params

# What SQS accepts as a MessageGroupId: up to 128 of these characters.
SQS_GROUP_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")


@pytest.fixture
def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


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


def test_delays_are_clipped_to_what_sqs_allows(sqs: Any) -> None:
    # Given the lanes
    queue = SqsJobQueue(sqs, LANES)

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
    queue = SqsJobQueue(sqs, LANES)

    # When a message received from a lane is dead-lettered
    params = sent_params(sqs, queue, lambda q: q.dead_letter("{}", "failed: boom", source_arn=source_arn))

    # Then it lands in that lane's DLQ with its reason (a FIFO DLQ needs a group and a dedup id)
    assert [p["QueueUrl"] for p in params] == [expected_dlq]
    assert params[0]["MessageAttributes"]["reason"]["StringValue"] == "failed: boom"
    assert ("MessageGroupId" in params[0]) is fifo
    assert ("MessageDeduplicationId" in params[0]) is fifo


def test_an_sqs_error_becomes_a_storage_error(sqs: Any) -> None:
    # Given SQS refusing the send
    queue = SqsJobQueue(sqs, LANES)
    with Stubber(sqs) as stub:
        stub.add_client_error("send_message", service_error_code="AWS.SimpleQueueService.NonExistentQueue")

        # When a grouped job is sent, then the caller sees a StorageError (the sweeper re-sends it later)
        with pytest.raises(StorageError, match="SendMessage"):
            queue.send(message(), lane=Lane.ORDERED, group_id="invoices")
