"""The stats aggregator: the jobs table's stream, the mapping that feeds it to the function, its permissions and
its alarms."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from infra.config import AWS_CONFIG
from infra.constructs.stats_stream import STATS_STREAM_HANDLER
from tests.infrastructure.template_utils import (
    Resources,
    arn,
    functions_by_handler,
    jobs_and_stats_tables,
    named_by_setting,
    of_type,
    only,
    permissions_for,
    render,
    role_of,
    role_permissions,
    send_to_every_lane,
)


def _aggregator(resources: Resources) -> tuple[str, dict[str, Any]]:
    return functions_by_handler(resources)[STATS_STREAM_HANDLER]


def _stream_mapping(resources: Resources, jobs_id: str) -> dict[str, Any]:
    """The properties of the one event source mapping that reads the jobs table's stream."""
    found = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [jobs_id, "StreamArn"]}
    ]
    assert len(found) == 1, f"one mapping on the jobs table's stream expected, found {found}"
    return found[0]


def _aggregator_alarm(resources: Resources, metric_name: str) -> dict[str, Any]:
    function_id, _ = _aggregator(resources)
    found = [
        alarm["Properties"]
        for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric_name
        and alarm["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    ]
    assert len(found) == 1, f"one {metric_name} alarm on the aggregator expected, found {len(found)}"
    return found[0]


def test_jobs_table_streams_new_and_old_images(resources: Resources) -> None:
    # Given the jobs table and the stats table
    (_, jobs), (_, stats) = jobs_and_stats_tables(resources)

    # Then the jobs table streams each change with the record before and after it (a status change is a delta)
    assert jobs["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    # And the counters' own table has no stream
    assert "StreamSpecification" not in stats["Properties"]


def test_aggregator_reads_the_jobs_stream_in_order_whole_batches_and_without_giving_up(resources: Resources) -> None:
    # Given the jobs table and the aggregator function
    (jobs_id, _), _ = jobs_and_stats_tables(resources)
    function_id, properties = _aggregator(resources)

    # When the mapping on the jobs table's stream is read
    mapping = _stream_mapping(resources, jobs_id)

    # Then it invokes the aggregator from the oldest record, in batches of 100 gathered for up to 1 s, within a 1 s
    # tumbling window (which puts shardId in the event), one batch per shard at a time
    assert mapping["FunctionName"] == {"Ref": function_id}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == AWS_CONFIG.stats_stream.batch_size == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == AWS_CONFIG.stats_stream.batching_window_seconds == 1
    assert mapping["TumblingWindowInSeconds"] == AWS_CONFIG.stats_stream.window_seconds == 1
    assert mapping["ParallelizationFactor"] == 1
    # And a failing batch is retried whole until its records expire: not bisected, not partially reported, not
    # dropped after some attempts or some age, not sent elsewhere
    assert mapping.get("BisectBatchOnFunctionError", False) is False
    assert "FunctionResponseTypes" not in mapping
    assert mapping.get("MaximumRetryAttempts", -1) == -1
    assert mapping.get("MaximumRecordAgeInSeconds", -1) == -1
    assert "DestinationConfig" not in mapping
    # And the function has the configured timeout and memory
    assert properties["Handler"] == STATS_STREAM_HANDLER
    assert properties["Timeout"] == AWS_CONFIG.stats_stream.timeout_seconds == 30
    assert properties["MemorySize"] == AWS_CONFIG.stats_stream.memory_mb == 256


def test_only_inserts_and_modifies_invoke_the_aggregator_not_expiries(template: Template, resources: Resources) -> None:
    # Given the jobs table, whose final records expire (TTL): each expiry puts a REMOVE record on its stream
    (jobs_id, jobs), _ = jobs_and_stats_tables(resources)
    assert jobs["Properties"]["TimeToLiveSpecification"]["Enabled"] is True

    # When the mapping on the jobs table's stream is read
    mapping = _stream_mapping(resources, jobs_id)

    # Then its one filter lets INSERT and MODIFY records through and nothing else (no REMOVE: no invocation)
    patterns = [json.loads(entry["Pattern"]) for entry in mapping["FilterCriteria"]["Filters"]]
    assert patterns == [{"eventName": ["INSERT", "MODIFY"]}]
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [jobs_id, "StreamArn"]},
            "FilterCriteria": {"Filters": [{"Pattern": '{"eventName":["INSERT","MODIFY"]}'}]},
        },
    )
    # And it is the filter the local stack's stream source applies (local/stream_source.py)
    assert AWS_CONFIG.stats_stream.event_names == ("INSERT", "MODIFY")


def test_aggregator_writes_counters_settles_dependencies_and_reads_only_the_jobs_stream(resources: Resources) -> None:
    # Given the aggregator's role and the tables
    (jobs_id, _), (stats_id, _) = jobs_and_stats_tables(resources)
    _, properties = _aggregator(resources)
    stats, jobs = arn(stats_id), arn(jobs_id)
    dependencies = arn(named_by_setting(resources, "JOBS_DEPENDENCIES_TABLE")[0])
    stream = "${" + jobs_id + ".StreamArn}"

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(properties))

    # Then on DynamoDB it may update the stats table's items (one conditional update each, no read), read the jobs
    # table's stream (granted by the event source), and list streams (which has no resource-level permission);
    # and settle dependencies: read and resolve edges, read, release and cancel waiting jobs (no Scan, no Delete)
    assert permissions_for(pairs, "dynamodb") == {
        ("dynamodb:UpdateItem", stats),
        ("dynamodb:DescribeStream", stream),
        ("dynamodb:GetRecords", stream),
        ("dynamodb:GetShardIterator", stream),
        ("dynamodb:ListStreams", "*"),
        ("dynamodb:BatchGetItem", dependencies),
        ("dynamodb:BatchWriteItem", dependencies),
        ("dynamodb:Query", dependencies),
        ("dynamodb:UpdateItem", dependencies),
        ("dynamodb:BatchGetItem", jobs),
        ("dynamodb:GetItem", jobs),
        ("dynamodb:PutItem", jobs),
        ("dynamodb:UpdateItem", jobs),
    }
    # And a released job (or a cancelled one's callback) goes to its lane
    assert permissions_for(pairs, "sqs") == send_to_every_lane(resources)
    # And beyond that only its logs (tracing is off by default), with no wildcard action and no other "*" resource
    services = {action.split(":")[0] for action, _ in pairs}
    assert services == {"dynamodb", "logs", "sqs"}
    assert not [action for action, _ in pairs if "*" in action]
    assert {action for action, resource in pairs if resource == "*"} == {"dynamodb:ListStreams"}


def test_aggregator_falling_behind_the_stream_raises_an_alarm(resources: Resources) -> None:
    # Given the alarm topic
    topic_id, _ = only(resources, "AWS::SNS::Topic")

    # When the alarm on the aggregator's iterator age is read
    alarm = _aggregator_alarm(resources, "IteratorAge")

    # Then it fires when the oldest record of a batch is older than the configured age (the metric is in ms), held
    # for three minutes, and notifies the topic
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == AWS_CONFIG.stats_stream.iterator_age_alarm_seconds * 1000 == 300_000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 3
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_id}]


def test_any_aggregator_error_raises_an_alarm(resources: Resources) -> None:
    # Given the alarm topic
    topic_id, _ = only(resources, "AWS::SNS::Topic")

    # When the alarm on the aggregator's errors is read
    alarm = _aggregator_alarm(resources, "Errors")

    # Then one failed invocation within the rate period is enough, and it notifies the topic
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] == AWS_CONFIG.alarm_rate_period_minutes * 60
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_id}]


def test_the_dashboard_graphs_the_aggregator(resources: Resources) -> None:
    # Given the aggregator and the dashboard's body
    function_id, _ = _aggregator(resources)
    _, dashboard = only(resources, "AWS::CloudWatch::Dashboard")
    body = json.loads(render(dashboard["Properties"]["DashboardBody"]))

    # When the metrics of its graphs are listed by name for the aggregator
    graphed = {
        line[1]
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
        if line[0] == "AWS/Lambda" and line[2:4] == ["FunctionName", "${" + function_id + "}"]
    }

    # Then its iterator age, invocations, errors and throttles are on it
    assert graphed == {"IteratorAge", "Invocations", "Errors", "Throttles"}
