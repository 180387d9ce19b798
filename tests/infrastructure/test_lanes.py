"""The three lanes (normal, high priority, ordered FIFO), each a queue, a DLQ and a consumer; and the limits table."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template

from infra.config import AWS_CONFIG
from infra.constructs.queue_consumer import CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER
from tests.infrastructure.template_utils import (
    LANE_SETTINGS,
    Resources,
    all_functions,
    arn,
    functions_by_handler,
    lane_queue_and_dlq,
    named_by_setting,
    of_type,
    permissions_for,
    role_of,
    role_permissions,
    send_to_every_lane,
)

LANES = tuple(LANE_SETTINGS)  # normal, high, ordered


def _mapping_of(resources: Resources, queue_id: str) -> dict[str, Any]:
    found = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    assert len(found) == 1, f"one event source mapping on {queue_id} expected, found {found}"
    return found[0]


def _consumer_of(resources: Resources, lane: str) -> tuple[str, dict[str, Any]]:
    (queue_id, _), _ = lane_queue_and_dlq(resources, lane)
    function_id = _mapping_of(resources, queue_id)["FunctionName"]["Ref"]
    return function_id, resources[function_id]["Properties"]


def test_there_are_three_queues_and_three_dead_letter_queues(template: Template, resources: Resources) -> None:
    # Given the template
    template.resource_count_is("AWS::SQS::Queue", 6)

    # Then each lane's queue redrives to its own DLQ, which has no redrive of its own
    for lane in LANES:
        (_, queue), (dlq_id, dlq) = lane_queue_and_dlq(resources, lane)
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
        assert "RedrivePolicy" not in dlq
    # and the six are distinct queues
    ids = {lane_queue_and_dlq(resources, lane)[i][0] for lane in LANES for i in (0, 1)}
    assert len(ids) == 6


def test_the_ordered_lane_and_its_dlq_are_fifo_without_content_dedup_the_others_standard(
    resources: Resources,
) -> None:
    for lane in LANES:
        (_, queue), (_, dlq) = lane_queue_and_dlq(resources, lane)
        if lane == "ordered":
            # Then both are FIFO, deduplicated by the random id each send carries (not by content), in
            # high-throughput mode (per message group)
            for properties in (queue, dlq):
                assert properties["FifoQueue"] is True
                assert properties["ContentBasedDeduplication"] is False
                assert properties["DeduplicationScope"] == "messageGroup"
                assert properties["FifoThroughputLimit"] == "perMessageGroupId"
        else:
            assert "FifoQueue" not in queue and "FifoQueue" not in dlq


def test_redrive_counts_come_from_the_config(resources: Resources) -> None:
    # Given the lanes' queues
    counts = {lane: lane_queue_and_dlq(resources, lane)[0][1]["RedrivePolicy"]["maxReceiveCount"] for lane in LANES}

    # Then the ordered lane allows as many receives as SQS does (throttled grouped jobs wait by visibility)
    assert counts == {
        "normal": AWS_CONFIG.queue.max_receive_count,
        "high": AWS_CONFIG.queue.max_receive_count,
        "ordered": AWS_CONFIG.queue.ordered_max_receive_count,
    }
    assert AWS_CONFIG.queue.ordered_max_receive_count == 1000


def test_every_lane_has_its_own_consumer_with_partial_batch_responses(resources: Resources) -> None:
    consumers = {}
    for lane in LANES:
        # Given the lane's event source mapping
        (queue_id, queue), _ = lane_queue_and_dlq(resources, lane)
        mapping = _mapping_of(resources, queue_id)

        # Then it reports batch item failures, in batches of the configured size, with its own concurrency cap
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == AWS_CONFIG.consumer.batch_size
        concurrency = {
            "normal": AWS_CONFIG.consumer.max_concurrency,
            "high": AWS_CONFIG.consumer.high_max_concurrency,
            "ordered": AWS_CONFIG.consumer.ordered_max_concurrency,
        }[lane]
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": concurrency}
        # and the queue hides a message for at least 6x its consumer's timeout
        function_id, function = _consumer_of(resources, lane)
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
        consumers[lane] = (function_id, function["Handler"], mapping)

    # And the FIFO lane uses the FIFO entry point, without a batching window (Lambda has none for FIFO)
    assert consumers["ordered"][1] == ORDERED_CONSUMER_HANDLER
    assert "MaximumBatchingWindowInSeconds" not in consumers["ordered"][2]
    assert consumers["normal"][1] == consumers["high"][1] == CONSUMER_HANDLER
    assert consumers["high"][2]["MaximumBatchingWindowInSeconds"] == AWS_CONFIG.consumer.batching_window_seconds
    # and three different functions
    assert len({function_id for function_id, _, _ in consumers.values()}) == 3


def test_each_consumer_defers_only_its_own_queue_and_dead_letters_only_to_its_own_dlq(resources: Resources) -> None:
    for lane in LANES:
        # Given a lane's consumer and its permissions
        (queue_id, _), (dlq_id, _) = lane_queue_and_dlq(resources, lane)
        _, function = _consumer_of(resources, lane)
        sqs = permissions_for(role_permissions(resources, role_of(function)), "sqs")

        # Then it may change visibility of its own queue only, send to its own DLQ and to every lane's queue
        assert {r for a, r in sqs if a == "sqs:ChangeMessageVisibility"} == {arn(queue_id)}
        assert {(a, r) for a, r in sqs if a == "sqs:SendMessage"} == {
            ("sqs:SendMessage", arn(dlq_id))
        } | send_to_every_lane(resources)
        # (receiving and deleting come with the event source mapping, for its own queue only)
        assert {r for a, r in sqs if a == "sqs:ReceiveMessage"} == {arn(queue_id)}
        assert {r for a, r in sqs if a == "sqs:DeleteMessage"} == {arn(queue_id)}


def test_the_limits_table_is_keyed_by_pk_expires_and_is_like_the_other_tables(template: Template) -> None:
    # Then there is a table keyed by a string pk, with TTL on expiresAt, on demand, encrypted, recoverable
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
                    "BillingMode": "PAY_PER_REQUEST",
                    "SSESpecification": {"SSEEnabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )


def test_the_limits_table_is_used_by_the_consumers_and_the_api_only(resources: Resources) -> None:
    # Given the table the JOBS_LIMITS_TABLE setting names
    limits_id, limits = named_by_setting(resources, "JOBS_LIMITS_TABLE")
    assert limits["Type"] == "AWS::DynamoDB::Table"
    assert limits["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    consumers = {_consumer_of(resources, lane)[0] for lane in LANES}
    api, _ = functions_by_handler(resources)["functions.handlers.api.handler"]

    for function_id, function in all_functions(resources):
        # When each function's permissions on it are listed
        on_limits = {a for a, r in role_permissions(resources, role_of(function)) if r == arn(limits_id)}

        # Then the three consumers read and write it; the API only reads and sets a tenant's paused types; the
        # others do not touch it
        if function_id in consumers:
            limits_actions = {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}
            assert limits_actions <= on_limits
        elif function_id == api:
            assert on_limits == {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        else:
            assert on_limits == set()


def test_every_function_knows_every_lane(template: Template, resources: Resources) -> None:
    # Given the lanes' queue and DLQ ids
    expected: dict[str, Any] = {}
    for lane in LANES:
        (queue_id, _), (dlq_id, _) = lane_queue_and_dlq(resources, lane)
        queue_setting, dlq_setting = LANE_SETTINGS[lane]
        expected[queue_setting] = {"Ref": queue_id}
        expected[dlq_setting] = {"Ref": dlq_id}

    # Then all seven functions (the stats aggregator and the authorizer too: they share the environment) get every
    # lane's URLs and the threshold of the high lane
    template.resource_properties_count_is(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {**expected, "JOBS_HIGH_PRIORITY_THRESHOLD": str(AWS_CONFIG.high_priority_threshold)}
                )
            }
        },
        7,
    )
    # and the ordered lane's URL is the FIFO queue's
    (ordered_id, ordered), _ = lane_queue_and_dlq(resources, "ordered")
    assert ordered["FifoQueue"] is True and expected["JOBS_ORDERED_QUEUE_URL"] == {"Ref": ordered_id}


def test_each_dead_letter_queue_has_an_alarm(resources: Resources) -> None:
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert alarmed == {lane_queue_and_dlq(resources, lane)[1][0] for lane in LANES}
