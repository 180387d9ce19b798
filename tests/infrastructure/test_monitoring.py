"""Monitoring: the dashboard, and alarms (dead letters, queues not draining, consumers and the API failing) that
publish to an encrypted topic."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from infra.config import AWS_CONFIG, ServiceConfig
from infra.constructs.api import API_HANDLER
from infra.constructs.monitoring import JOB_FLOW_SQS_METRICS, JOB_TROUBLE_METRICS, SWEEPER_METRICS
from infra.constructs.stats_stream import STATS_STREAM_HANDLER
from infra.constructs.sweeper import SWEEPER_HANDLER
from infra.stack import ServiceStack
from tests.infrastructure.conftest import REPO_ROOT, Synthesized
from tests.infrastructure.template_utils import (
    LANE_SETTINGS,
    Resources,
    functions_by_handler,
    lane_queue_and_dlq,
    of_type,
    only,
    render,
)

LANES = tuple(LANE_SETTINGS)  # normal, high, ordered

# A metric as graphed or alarmed on: (namespace, name, dimensions as sorted (name, rendered value) pairs).
MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]


def _queue_dimension(queue_id: str) -> tuple[tuple[str, str], ...]:
    return (("QueueName", "${" + queue_id + ".QueueName}"),)


def _function_dimension(function_id: str) -> tuple[tuple[str, str], ...]:
    return (("FunctionName", "${" + function_id + "}"),)


def _consumer_of(resources: Resources, lane: str) -> str:
    """The logical id of the function the lane's queue triggers."""
    (queue_id, _), _ = lane_queue_and_dlq(resources, lane)
    (function_id,) = [
        m["Properties"]["FunctionName"]["Ref"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    return str(function_id)


def _stage_dimensions(resources: Resources) -> tuple[tuple[str, str], ...]:
    (stage_id,) = of_type(resources, "AWS::ApiGatewayV2::Stage")
    api_id, _ = only(resources, "AWS::ApiGatewayV2::Api")
    return (("ApiId", "${" + api_id + "}"), ("Stage", resources[stage_id]["Properties"]["StageName"]))


def _alarm_metrics(alarm: dict[str, Any]) -> dict[MetricKey, dict[str, Any]]:
    """Every metric an alarm reads (its own, or the inputs of its expression) -> its Stat and Period."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        stats = [(properties, {"Stat": properties["Statistic"], "Period": properties["Period"]})]
    else:
        stats = [
            (m["MetricStat"]["Metric"], {"Stat": m["MetricStat"]["Stat"], "Period": m["MetricStat"]["Period"]})
            for m in properties["Metrics"]
            if "MetricStat" in m
        ]
    return {
        (
            metric["Namespace"],
            metric["MetricName"],
            tuple(sorted((d["Name"], render(d["Value"])) for d in metric.get("Dimensions", []))),
        ): stat
        for metric, stat in stats
    }


def _alarms_on(resources: Resources, key: MetricKey) -> list[dict[str, Any]]:
    return [
        alarm["Properties"]
        for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if key in _alarm_metrics(alarm)
    ]


def _only_alarm_on(resources: Resources, key: MetricKey) -> dict[str, Any]:
    found = _alarms_on(resources, key)
    assert len(found) == 1, f"one alarm on {key} expected, found {len(found)}"
    return found[0]


def _dashboard(resources: Resources) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's properties and its body, parsed (references rendered as ``${LogicalId.Attribute}``)."""
    _, dashboard = only(resources, "AWS::CloudWatch::Dashboard")
    return dashboard["Properties"], json.loads(render(dashboard["Properties"]["DashboardBody"]))


def _graphed(body: dict[str, Any]) -> dict[MetricKey, list[dict[str, Any]]]:
    """Every metric of the dashboard's graphs -> the options (stat, period, label) of each of its lines."""
    graphed: dict[MetricKey, list[dict[str, Any]]] = {}
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            *names, options = line if isinstance(line[-1], dict) else [*line, {}]
            if not names:
                continue  # an expression: its inputs are lines of their own
            namespace, metric_name, *dimensions = names
            key = (namespace, metric_name, tuple(sorted(zip(dimensions[::2], dimensions[1::2], strict=True))))
            graphed.setdefault(key, []).append(options)
    return graphed


# Alarms


@pytest.mark.parametrize("lane", LANES)
def test_any_message_in_a_lane_dlq_raises_an_alarm(resources: Resources, lane: str) -> None:
    # Given the lane's DLQ
    _, (dlq_id, _) = lane_queue_and_dlq(resources, lane)

    # When the alarm on its visible messages is read
    alarm = _only_alarm_on(resources, ("AWS/SQS", "ApproximateNumberOfMessagesVisible", _queue_dimension(dlq_id)))

    # Then one message is enough
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("lane", "threshold"),
    [
        ("normal", AWS_CONFIG.queue_age_alarm_seconds),
        ("high", AWS_CONFIG.queue_age_alarm_seconds),
        # A group legitimately waits behind its failing job's retries: a longer threshold of its own.
        ("ordered", AWS_CONFIG.ordered_queue_age_alarm_seconds),
    ],
)
def test_an_old_message_in_a_lane_queue_raises_an_alarm(resources: Resources, lane: str, threshold: int) -> None:
    # Given the lane's queue
    (queue_id, _), _ = lane_queue_and_dlq(resources, lane)

    # When the alarm on its oldest message is read
    alarm = _only_alarm_on(resources, ("AWS/SQS", "ApproximateAgeOfOldestMessage", _queue_dimension(queue_id)))

    # Then it fires at the lane's configured age, held for three minutes
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == threshold
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 3


@pytest.mark.parametrize("lane", LANES)
def test_each_consumer_has_an_error_rate_alarm(resources: Resources, lane: str) -> None:
    # Given the function the lane's queue triggers
    function_id = _consumer_of(resources, lane)
    errors = ("AWS/Lambda", "Errors", _function_dimension(function_id))
    invocations = ("AWS/Lambda", "Invocations", _function_dimension(function_id))

    # When the alarm on its errors is read
    alarm = _only_alarm_on(resources, errors)

    # Then it divides the function's errors by its invocations over the configured window, as a percentage, fires
    # above the configured rate, and stays quiet while the lane is idle
    inputs = _alarm_metrics({"Properties": alarm})
    assert set(inputs) == {errors, invocations}
    assert {(s["Stat"], s["Period"]) for s in inputs.values()} == {("Sum", AWS_CONFIG.alarm_rate_period_minutes * 60)}
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    errors_id, invocations_id = (
        next(m["Id"] for m in alarm["Metrics"] if m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == name)
        for name in ("Errors", "Invocations")
    )
    assert f"100 * {errors_id} / {invocations_id}" in expression["Expression"]
    assert expression["ReturnData"] is True
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == AWS_CONFIG.consumer_error_rate_alarm_percent
    assert alarm["TreatMissingData"] == "notBreaching"


def test_the_api_answering_5xx_raises_an_alarm(resources: Resources) -> None:
    # Given the API's stage
    server_errors = ("AWS/ApiGateway", "5xx", _stage_dimensions(resources))

    # When the alarm on its 5XX responses is read
    alarm = _only_alarm_on(resources, server_errors)

    # Then it fires when the share of 5XX answers (the metric's average, as a percentage) passes the configured rate
    assert _alarm_metrics({"Properties": alarm})[server_errors] == {
        "Stat": "Average",
        "Period": AWS_CONFIG.alarm_rate_period_minutes * 60,
    }
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert expression["Expression"].replace(" ", "").startswith("100*")
    assert alarm["Threshold"] == AWS_CONFIG.api_5xx_alarm_percent
    assert alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears_and_says_why(resources: Resources) -> None:
    # Given the alarm topic and every alarm
    topic_id, _ = only(resources, "AWS::SNS::Topic")
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")

    # Then there are the 3 DLQ, 3 queue-age, 3 consumer error-rate alarms, the API's and the stats aggregator's 2,
    # each notifying the topic on both transitions with a description for whoever gets paged
    assert len(alarms) == 12
    for logical_id, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": topic_id}], logical_id
        assert properties["OKActions"] == [{"Ref": topic_id}], logical_id
        assert len(properties["AlarmDescription"]) > 40, logical_id


@pytest.fixture(scope="module")
def tuned_resources(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServiceConfig, Resources]:
    """The stack synthesized with every alarm threshold changed."""
    config = replace(
        AWS_CONFIG,
        queue_age_alarm_seconds=321,
        ordered_queue_age_alarm_seconds=4321,
        alarm_rate_period_minutes=10,
        consumer_error_rate_alarm_percent=12.5,
        api_5xx_alarm_percent=2.5,
        stats_stream=replace(AWS_CONFIG.stats_stream, iterator_age_alarm_seconds=77),
    )
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    app = App(context=context, outdir=str(tmp_path_factory.mktemp("tuned.cdk.out")))
    stack: Stack = ServiceStack(app, "TunedJobs", config=config)
    return config, Template.from_stack(stack).to_json()["Resources"]


def test_alarm_thresholds_come_from_the_config(tuned_resources: tuple[ServiceConfig, Resources]) -> None:
    # Given the stack synthesized with other thresholds
    config, resources = tuned_resources

    # When its alarms are read
    def alarm_on(namespace: str, name: str, dimensions: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        return _only_alarm_on(resources, (namespace, name, dimensions))

    (normal_id, _), _ = lane_queue_and_dlq(resources, "normal")
    (ordered_id, _), _ = lane_queue_and_dlq(resources, "ordered")
    normal_age = alarm_on("AWS/SQS", "ApproximateAgeOfOldestMessage", _queue_dimension(normal_id))
    ordered_age = alarm_on("AWS/SQS", "ApproximateAgeOfOldestMessage", _queue_dimension(ordered_id))
    consumer = alarm_on("AWS/Lambda", "Errors", _function_dimension(_consumer_of(resources, "normal")))
    api = alarm_on("AWS/ApiGateway", "5xx", _stage_dimensions(resources))
    aggregator = _function_dimension(functions_by_handler(resources)[STATS_STREAM_HANDLER][0])
    iterator_age = alarm_on("AWS/Lambda", "IteratorAge", aggregator)
    aggregator_errors = alarm_on("AWS/Lambda", "Errors", aggregator)

    # Then each follows its setting
    assert normal_age["Threshold"] == config.queue_age_alarm_seconds
    assert ordered_age["Threshold"] == config.ordered_queue_age_alarm_seconds
    assert consumer["Threshold"] == config.consumer_error_rate_alarm_percent
    assert api["Threshold"] == config.api_5xx_alarm_percent
    assert iterator_age["Threshold"] == 77_000  # milliseconds
    for alarm in (consumer, api, aggregator_errors):
        periods = {s["Period"] for s in _alarm_metrics({"Properties": alarm}).values()}
        assert periods == {config.alarm_rate_period_minutes * 60}


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


def test_the_outputs_name_the_alarm_topic_and_the_dashboard(resources: Resources, synthesized: Synthesized) -> None:
    # Given the stack's outputs
    outputs = synthesized.outputs
    topic_id, _ = only(resources, "AWS::SNS::Topic")
    dashboard_id, _ = only(resources, "AWS::CloudWatch::Dashboard")

    # Then operators find where to subscribe and which dashboard to open
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": topic_id}
    assert outputs["DashboardName"]["Value"] == {"Ref": dashboard_id}


# Dashboard


def test_the_dashboard_is_named_after_the_stack_and_service(resources: Resources) -> None:
    properties, body = _dashboard(resources)
    assert properties["DashboardName"] == f"{AWS_CONFIG.stack_name}-{AWS_CONFIG.service_name}"
    assert body["widgets"]


def test_the_dashboard_graphs_the_service_counters_per_minute(resources: Resources) -> None:
    # Given the dashboard's graphs
    graphed = _graphed(_dashboard(resources)[1])
    service = (("service", AWS_CONFIG.service_name),)

    # Then every counter the functions emit is graphed as a per-minute sum, in the functions' namespace with their
    # Powertools service dimension
    for name in (*JOB_TROUBLE_METRICS, *SWEEPER_METRICS):
        lines = graphed.get((AWS_CONFIG.metrics_namespace, name, service))
        assert lines, f"{name} is not graphed"
        assert all(line["stat"] == "Sum" and line["period"] == 60 for line in lines), name
    assert {"JobsFailed", "JobsRetried", "JobsThrottled", "OrphansFailed"} <= {*JOB_TROUBLE_METRICS, *SWEEPER_METRICS}
    # and none that a free metric or /stats already gives (a job's normal flow, its duration)
    custom = {name for namespace, name, _ in graphed if namespace == AWS_CONFIG.metrics_namespace}
    assert custom == {*JOB_TROUBLE_METRICS, *SWEEPER_METRICS}


def test_the_dashboard_graphs_the_job_flow_from_every_lane_queue(resources: Resources) -> None:
    # Given the lanes' queues and the dashboard's graphs
    queues = [lane_queue_and_dlq(resources, lane)[0][0] for lane in LANES]
    body = _dashboard(resources)[1]
    graphed = _graphed(body)
    expressions = {
        options["label"]: options["expression"]
        for widget in body["widgets"]
        for *names, options in widget["properties"].get("metrics", [])
        if not names and "expression" in options
    }

    # Then dispatched, started and ended jobs are each one line summing SQS's own per-minute counts of every lane
    for label, metric_name in JOB_FLOW_SQS_METRICS.items():
        for queue_id in queues:
            lines = graphed[("AWS/SQS", metric_name, _queue_dimension(queue_id))]
            assert all(line["stat"] == "Sum" and line["period"] == 60 for line in lines), metric_name
        assert expressions[label].count("FILL(") == len(LANES), label


@pytest.mark.parametrize("lane", LANES)
def test_the_dashboard_graphs_each_lane_queue_dlq_and_consumer(resources: Resources, lane: str) -> None:
    # Given the lane's queue, DLQ and consumer, and the dashboard's graphs
    (queue_id, _), (dlq_id, _) = lane_queue_and_dlq(resources, lane)
    function_id = _consumer_of(resources, lane)
    graphed = _graphed(_dashboard(resources)[1])

    # Then the queue's depth and oldest message, the DLQ's depth, and the consumer's invocations, errors,
    # throttles and duration percentiles are all on it
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", _queue_dimension(queue_id)) in graphed
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", _queue_dimension(queue_id)) in graphed
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", _queue_dimension(dlq_id)) in graphed
    for name in ("Invocations", "Errors", "Throttles"):
        assert ("AWS/Lambda", name, _function_dimension(function_id)) in graphed, name
    durations = graphed[("AWS/Lambda", "Duration", _function_dimension(function_id))]
    assert {"p50", "p99"} <= {line["stat"] for line in durations}


def test_the_dashboard_graphs_the_api_and_the_sweeper(resources: Resources) -> None:
    # Given the API and sweeper functions, the API's stage and the dashboard's graphs
    handlers = functions_by_handler(resources)
    api_id, _ = handlers[API_HANDLER]
    sweeper_id, _ = handlers[SWEEPER_HANDLER]
    stage = _stage_dimensions(resources)
    graphed = _graphed(_dashboard(resources)[1])

    # Then API Gateway's 4XX/5XX/latency, the API function's errors and duration, and the sweeper's errors show
    for name in ("Count", "4xx", "5xx", "Latency"):
        assert ("AWS/ApiGateway", name, stage) in graphed, name
    for name in ("Errors", "Duration"):
        assert ("AWS/Lambda", name, _function_dimension(api_id)) in graphed, name
    assert ("AWS/Lambda", "Errors", _function_dimension(sweeper_id)) in graphed


def test_the_dashboard_shows_the_state_of_every_alarm(resources: Resources) -> None:
    # Given every alarm and the dashboard
    alarm_arns = {"${" + logical_id + ".Arn}" for logical_id in of_type(resources, "AWS::CloudWatch::Alarm")}
    _, body = _dashboard(resources)

    # Then its alarm widget lists them all
    listed = {arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]}
    assert listed == alarm_arns
