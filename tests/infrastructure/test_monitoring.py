"""Alarms: dead letters and a queue that is not draining, published to an encrypted topic."""

from __future__ import annotations

from typing import Any

from infra.config import AWS_CONFIG
from tests.infrastructure.template_utils import Resources, main_queue_and_dlq, of_type, only


def _alarm_on(resources: Resources, metric: str, queue_id: str) -> dict[str, Any]:
    found = [
        a["Properties"]
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == metric
        and a["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    ]
    assert len(found) == 1, f"one alarm on {metric} of {queue_id} expected"
    return found[0]


def test_any_message_in_the_dlq_raises_an_alarm(resources: Resources) -> None:
    # Given the DLQ and the alarm topic
    _, (dlq_id, _) = main_queue_and_dlq(resources)
    topic_id, _ = only(resources, "AWS::SNS::Topic")

    # When the alarm on its visible messages is read
    alarm = _alarm_on(resources, "ApproximateNumberOfMessagesVisible", dlq_id)

    # Then one message is enough, and the topic hears about it
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_an_old_message_in_the_main_queue_raises_an_alarm(resources: Resources) -> None:
    # Given the main queue and the alarm topic
    (queue_id, _), _ = main_queue_and_dlq(resources)
    topic_id, _ = only(resources, "AWS::SNS::Topic")

    # When the alarm on its oldest message is read
    alarm = _alarm_on(resources, "ApproximateAgeOfOldestMessage", queue_id)

    # Then it fires at the configured age
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == AWS_CONFIG.queue_age_alarm_seconds
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(resources: Resources) -> None:
    # Given the topic and its key
    _, topic = only(resources, "AWS::SNS::Topic")
    key_id, key = only(resources, "AWS::KMS::Key")

    # Then the topic uses the key, the key rotates, and CloudWatch may encrypt with it (alias/aws/sns would not
    # let CloudWatch publish)
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
