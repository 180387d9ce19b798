"""The job queue, its DLQ, and the consumer's event source and permissions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from infra.config import AWS_CONFIG
from infra.constructs.queue_consumer import CONSUMER_HANDLER
from tests.infrastructure.template_utils import (
    LANE_SETTINGS,
    Resources,
    arn,
    functions_by_handler,
    imports_table,
    jobs_and_stats_tables,
    lane_queue_and_dlq,
    main_queue_and_dlq,
    named_by_setting,
    object_arns,
    of_type,
    only,
    permissions_for,
    role_of,
    role_permissions,
    send_to_every_lane,
)

LIMITS_ACTIONS = (
    "dynamodb:GetItem",  # a job type's pause flag (functions/dal/pauses.py)
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)


def normal_consumer(resources: Resources) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the normal lane's consumer: the one its queue's event source feeds."""
    (queue_id, _), _ = main_queue_and_dlq(resources)
    (function_ref,) = [
        m["Properties"]["FunctionName"]["Ref"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    return function_ref, resources[function_ref]["Properties"]


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(resources: Resources) -> None:
    # Given the main queue and the consumer function
    (_, queue), _ = main_queue_and_dlq(resources)
    _, consumer = normal_consumer(resources)
    assert consumer["Handler"] == CONSUMER_HANDLER

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


def test_queues_are_encrypted_ssl_only(resources: Resources) -> None:
    # Given both queues and the queue policies
    ssl_only = {
        policy["Properties"]["Queues"][0]["Ref"]
        for policy in of_type(resources, "AWS::SQS::QueuePolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    for logical_id, queue in main_queue_and_dlq(resources):
        # Then each uses SQS-managed encryption and refuses plain HTTP
        assert queue["SqsManagedSseEnabled"] is True
        assert logical_id in ssl_only


@pytest.mark.parametrize("lane", sorted(LANE_SETTINGS))
def test_every_lanes_dlq_keeps_messages_longer_than_its_queue(resources: Resources, lane: str) -> None:
    # Given a lane's queue and DLQ
    (_, queue), (_, dlq) = lane_queue_and_dlq(resources, lane)
    # Then each keeps messages for its configured retention, the DLQ longer: a message redriven from the DLQ keeps
    # its first enqueue time, and with equal retention could expire as it arrives
    day = 24 * 3600
    assert queue["MessageRetentionPeriod"] == AWS_CONFIG.queue.retention_days * day
    assert dlq["MessageRetentionPeriod"] == AWS_CONFIG.queue.dlq_retention_days * day
    assert queue["MessageRetentionPeriod"] < dlq["MessageRetentionPeriod"] <= 14 * day


def test_a_dlq_retention_not_above_the_queues_stops_synth() -> None:
    from aws_cdk import App

    from infra.stack import ServiceStack

    config = replace(AWS_CONFIG, queue=replace(AWS_CONFIG.queue, retention_days=14, dlq_retention_days=14))
    with pytest.raises(ValueError, match=r"queue retention \(14 d\) must be shorter than the DLQ's \(14 d\)"):
        ServiceStack(App(), "Retention", config=config)


def test_event_source_reports_batch_item_failures_with_the_configured_batching(resources: Resources) -> None:
    # Given the event source mapping of the consumer
    (queue_id, _), _ = main_queue_and_dlq(resources)
    consumer_id, _ = normal_consumer(resources)
    (properties,) = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]

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
    (jobs_id, _), _ = jobs_and_stats_tables(resources)
    jobs = arn(jobs_id)
    _, consumer = normal_consumer(resources)

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(consumer))

    # Then DynamoDB access is the item operations on jobs, batch-import's writes to the imports table and the
    # limits' state, nothing else (the stats aggregator writes the counters)
    imports = arn(imports_table(resources)[0])
    limits = arn(named_by_setting(resources, "JOBS_LIMITS_TABLE")[0])
    assert permissions_for(pairs, "dynamodb") == {
        ("dynamodb:GetItem", jobs),
        ("dynamodb:PutItem", jobs),
        ("dynamodb:UpdateItem", jobs),
        ("dynamodb:BatchWriteItem", imports),
        *{(action, limits) for action in LIMITS_ACTIONS},
    }
    # And it may defer messages of the main queue, send to its DLQ and to every lane (re-sends, callbacks)
    queue, dlq = arn(queue_id), arn(dlq_id)
    assert {("sqs:ChangeMessageVisibility", queue), ("sqs:GetQueueUrl", queue), ("sqs:SendMessage", dlq)} <= pairs
    assert {pair for pair in pairs if pair[0] == "sqs:SendMessage"} == {("sqs:SendMessage", dlq)} | send_to_every_lane(
        resources
    )
    # (receive/delete come from the event source mapping)
    assert {("sqs:ReceiveMessage", queue), ("sqs:DeleteMessage", queue)} <= pairs


def test_consumer_has_exactly_the_permissions_the_job_types_use(resources: Resources) -> None:
    # Given the consumer's role, the files bucket and the configured sender, models and secret prefix
    _, consumer = functions_by_handler(resources)[CONSUMER_HANDLER]
    bucket_id, _ = only(resources, "AWS::S3::Bucket")
    settings = AWS_CONFIG.settings()
    region, account = "${AWS::Region}", "${AWS::AccountId}"
    partition = "${AWS::Partition}"

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(consumer))

    # Then S3: read uploads and offloaded payloads, write job outputs, each under its prefix only
    assert permissions_for(pairs, "s3") == {
        *(("s3:GetObject", resource) for resource in object_arns(bucket_id, "uploads/", "payloads/")),
        *(("s3:PutObject", resource) for resource in object_arns(bucket_id, "processed/", "fetched/", "crawls/")),
    }
    # And SES: nothing without a configured sender (test_deploy_choices.py has one)
    assert permissions_for(pairs, "ses") == set()
    # And Bedrock: invoke exactly the configured models (test_deploy_choices.py has the ARNs)
    assert {action for action, _ in permissions_for(pairs, "bedrock")} == {"bedrock:InvokeModel"}
    # And Secrets Manager: the webhook signing secrets' prefix only
    secrets = f"arn:{partition}:secretsmanager:{region}:{account}:secret:{settings.webhook_secret_prefix}*"
    assert permissions_for(pairs, "secretsmanager") == {
        (action, secrets) for action in ("secretsmanager:GetSecretValue", "secretsmanager:CreateSecret")
    }
