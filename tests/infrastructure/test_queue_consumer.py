"""The job queue, its DLQ, and the consumer's event source and permissions."""

from __future__ import annotations

from infra.config import AWS_CONFIG
from infra.constructs.queue_consumer import CONSUMER_HANDLER
from tests.infrastructure.template_utils import (
    Resources,
    arn,
    functions_by_handler,
    jobs_and_stats_tables,
    main_queue_and_dlq,
    of_type,
    only,
    permissions_for,
    role_of,
    role_permissions,
)


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(resources: Resources) -> None:
    # Given the main queue and the consumer function
    (_, queue), _ = main_queue_and_dlq(resources)
    _, consumer = functions_by_handler(resources)[CONSUMER_HANDLER]

    # Then a message stays hidden for at least 6x the time one invocation may take
    assert queue["VisibilityTimeout"] >= 6 * consumer["Timeout"]
    assert consumer["Timeout"] == AWS_CONFIG.consumer.timeout_seconds


def test_main_queue_redrives_to_the_dlq(resources: Resources) -> None:
    # Given both queues
    (_, queue), (dlq_id, _) = main_queue_and_dlq(resources)

    # Then messages received too often go to the DLQ, after the configured count
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": AWS_CONFIG.queue.max_receive_count,
    }


def test_queues_are_encrypted_ssl_only_and_keep_messages_for_the_retention(resources: Resources) -> None:
    # Given both queues and the queue policies
    retention = AWS_CONFIG.queue.retention_days * 24 * 3600
    ssl_only = {
        policy["Properties"]["Queues"][0]["Ref"]
        for policy in of_type(resources, "AWS::SQS::QueuePolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    for logical_id, queue in main_queue_and_dlq(resources):
        # Then each uses SQS-managed encryption, refuses plain HTTP, and keeps messages for the retention
        assert queue["SqsManagedSseEnabled"] is True
        assert queue["MessageRetentionPeriod"] == retention
        assert logical_id in ssl_only


def test_event_source_reports_batch_item_failures_with_the_configured_batching(resources: Resources) -> None:
    # Given the event source mapping of the consumer
    (queue_id, _), _ = main_queue_and_dlq(resources)
    consumer_id, _ = functions_by_handler(resources)[CONSUMER_HANDLER]
    _, mapping = only(resources, "AWS::Lambda::EventSourceMapping")
    properties = mapping["Properties"]

    # Then it reads the main queue into the consumer with partial batch responses and the configured batching
    assert properties["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert properties["FunctionName"] == {"Ref": consumer_id}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BatchSize"] == AWS_CONFIG.consumer.batch_size
    assert properties["MaximumBatchingWindowInSeconds"] == AWS_CONFIG.consumer.batching_window_seconds
    assert properties["ScalingConfig"] == {"MaximumConcurrency": AWS_CONFIG.consumer.max_concurrency}


def test_consumer_has_exactly_the_dynamodb_and_sqs_permissions_it_uses(resources: Resources) -> None:
    # Given the consumer's role and the resources it works on
    (queue_id, _), (dlq_id, _) = main_queue_and_dlq(resources)
    (jobs_id, _), (stats_id, _) = jobs_and_stats_tables(resources)
    jobs, stats = arn(jobs_id), arn(stats_id)
    _, consumer = functions_by_handler(resources)[CONSUMER_HANDLER]

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(consumer))

    # Then DynamoDB access is the item operations on jobs and counter updates on stats, nothing else
    assert permissions_for(pairs, "dynamodb") == {
        ("dynamodb:GetItem", jobs),
        ("dynamodb:PutItem", jobs),
        ("dynamodb:UpdateItem", jobs),
        ("dynamodb:ConditionCheckItem", jobs),
        ("dynamodb:UpdateItem", stats),
    }
    # And it may defer messages of the main queue, and send to the DLQ only
    queue, dlq = arn(queue_id), arn(dlq_id)
    assert {("sqs:ChangeMessageVisibility", queue), ("sqs:GetQueueUrl", queue), ("sqs:SendMessage", dlq)} <= pairs
    assert ("sqs:SendMessage", queue) not in pairs
    # (receive/delete come from the event source mapping)
    assert {("sqs:ReceiveMessage", queue), ("sqs:DeleteMessage", queue)} <= pairs
