"""What an operator watches: one CloudWatch dashboard, and alarms on the signals that mean jobs are not getting done
(dead letters, a queue that is not draining, consumers or the API failing) or counts are about to be lost (the stats
aggregator falling behind the jobs table's stream), published to an encrypted SNS topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import ServiceConfig

# The functions' Powertools metrics (functions/handlers/runtime.py ``emit``): the namespace and the "service"
# dimension come from POWERTOOLS_METRICS_NAMESPACE and POWERTOOLS_SERVICE_NAME (infra/constructs/function.py).
# Only what nothing free shows, each published only in the minutes it is not zero: a job's normal flow is graphed
# from its queue's own metrics (JOB_FLOW_SQS_METRICS) and the consumers' duration from Lambda's, and /stats counts
# every status exactly, so no custom metric is billed ($0.30 a month each) for jobs that simply succeed.
JOB_TROUBLE_METRICS = ("JobsFailed", "JobsRetried", "JobsThrottled", "DuplicateMessages", "MalformedMessages")
SWEEPER_METRICS = ("ScheduledReleased", "PendingResent", "CallbacksResent", "OrphansResent", "OrphansFailed")
# A job's flow, all lanes together, from SQS's free metrics: label -> metric of each lane's queue. A message is
# sent when a job is dispatched, received at each attempt's start (a retry keeps its message) and deleted when the
# job ends (completed, or failed and dead-lettered by the consumer).
JOB_FLOW_SQS_METRICS = {
    "Dispatched": "NumberOfMessagesSent",
    "Attempts started": "NumberOfMessagesReceived",
    "Ended": "NumberOfMessagesDeleted",
}

_MINUTE = Duration.minutes(1)
_WIDE, _THIRD, _HEIGHT = 12, 8, 6


@dataclass(frozen=True)
class MonitoredLane:
    """One lane of jobs: its queue, its dead-letter queue and the function that consumes it."""

    name: str  # "Normal", "High", "Ordered": widget labels and construct ids
    queue: sqs.IQueue
    dlq: sqs.IQueue
    consumer: lambda_.IFunction


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ServiceConfig,
        lanes: Sequence[MonitoredLane],
        api_function: lambda_.IFunction,
        api_stage: apigwv2.HttpStage,
        sweeper_function: lambda_.IFunction,
        stats_aggregator_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._rate_period = Duration.minutes(config.alarm_rate_period_minutes)
        # CloudWatch cannot publish to a topic encrypted with the AWS-managed alias/aws/sns key (its key policy
        # cannot name CloudWatch), so the topic gets a small customer-managed key that allows exactly that.
        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{config.service_name}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # only protects alarm notifications in flight
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        # Subscribe e-mail, chat or paging to this topic (the stack's AlarmTopicArn output).
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{config.service_name} alarms", master_key=self.key, enforce_ssl=True
        )

        # The consumers dead-letter jobs themselves (attempts exhausted), and SQS does after max_receive_count: any
        # message in a lane's DLQ is a job that needs a person.
        self.dlq_alarms = [self._dead_letters_alarm(lane) for lane in lanes]
        # Scheduled jobs only reach the queue shortly before they are due, so an old message on the normal or high
        # lane means a stuck or overwhelmed consumer. (A retried job keeps its message, so a job with many attempts
        # at the backoff cap can reach the threshold too: raise queue_age_alarm_seconds if clients use long retry
        # schedules.) The ordered lane is alarmed as well, since nothing else would notice its consumer stopping, but
        # with its own, longer threshold: there a whole group legitimately waits behind its failing job's retry
        # schedule, so an age of minutes is normal (infra/config.py).
        self.queue_age_alarms = [self._queue_age_alarm(lane) for lane in lanes]
        # A consumer invocation fails as a whole only when the handler raises or times out (a failed job is a
        # partial batch failure): the whole batch comes back, and the lane slows down or stalls.
        self.consumer_error_alarms = [self._consumer_error_rate_alarm(lane) for lane in lanes]
        self.api_5xx_alarm = self._api_5xx_alarm(api_stage)
        # The status counters come from the jobs table's stream, which keeps records 24 h: if the stats aggregator
        # fails (it retries a batch until its records expire) or falls behind for that long, counts are lost for
        # good. Both alarms leave hours to act.
        self.stats_iterator_age_alarm = self._stats_iterator_age_alarm(stats_aggregator_function)
        self.stats_errors_alarm = self._stats_errors_alarm(stats_aggregator_function)
        self.alarms: list[cloudwatch.Alarm] = [
            *self.dlq_alarms,
            *self.queue_age_alarms,
            *self.consumer_error_alarms,
            self.api_5xx_alarm,
            self.stats_iterator_age_alarm,
            self.stats_errors_alarm,
        ]
        action = cloudwatch_actions.SnsAction(self.topic)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-{config.service_name}",
            default_interval=Duration.hours(3),
        )
        self._add_widgets(lanes, api_function, api_stage, sweeper_function, stats_aggregator_function)

    # Alarms

    def _dead_letters_alarm(self, lane: MonitoredLane) -> cloudwatch.Alarm:
        return self._alarm(
            f"{lane.name}DeadLettersAlarm",
            description=f"Jobs reached the {lane.name.lower()} lane's dead-letter queue: each needs a person "
            "(inspect it, then redrive or delete it)",
            metric=lane.dlq.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum"),
            threshold=1,
            evaluation_periods=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def _queue_age_alarm(self, lane: MonitoredLane) -> cloudwatch.Alarm:
        config = self._config
        threshold = config.ordered_queue_age_alarm_seconds if lane.queue.fifo else config.queue_age_alarm_seconds
        return self._alarm(
            f"{lane.name}QueueAgeAlarm",
            description=f"The oldest message of the {lane.name.lower()} lane's queue has been waiting for "
            f"{threshold} s or more for 3 minutes: its consumer is stuck or far behind",
            metric=lane.queue.metric_approximate_age_of_oldest_message(period=_MINUTE, statistic="Maximum"),
            threshold=threshold,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def _consumer_error_rate_alarm(self, lane: MonitoredLane) -> cloudwatch.Alarm:
        config = self._config
        percent = config.consumer_error_rate_alarm_percent
        return self._alarm(
            f"{lane.name}ConsumerErrorRateAlarm",
            description=f"More than {percent:g} % of the {lane.name.lower()} lane consumer's invocations failed "
            f"as a whole (raised or timed out) over {config.alarm_rate_period_minutes} minutes: their batches come "
            "back to the queue",
            metric=self._error_rate(lane.consumer, f"{lane.name} consumer error rate (%)", lane.name.lower()),
            threshold=percent,
            evaluation_periods=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

    def _api_5xx_alarm(self, stage: apigwv2.HttpStage) -> cloudwatch.Alarm:
        config = self._config
        percent = config.api_5xx_alarm_percent
        return self._alarm(
            "Api5xxAlarm",
            description=f"More than {percent:g} % of API requests were answered 5XX over "
            f"{config.alarm_rate_period_minutes} minutes (the API answers its own errors as 4XX: a 5XX is a crash, "
            "a timeout or storage being unavailable)",
            # 5XXError is 1 or 0 per request, so its average is the share of requests that failed.
            metric=cloudwatch.MathExpression(
                expression="100 * errors",
                using_metrics={"errors": stage.metric_server_error(period=self._rate_period, statistic="Average")},
                label="API 5XX (%)",
                period=self._rate_period,
            ),
            threshold=percent,
            evaluation_periods=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

    def _stats_iterator_age_alarm(self, fn: lambda_.IFunction) -> cloudwatch.Alarm:
        seconds = self._config.stats_stream.iterator_age_alarm_seconds
        return self._alarm(
            "StatsIteratorAgeAlarm",
            description=f"The stats aggregator is more than {seconds} s behind the jobs table's stream for 3 "
            "minutes: it is failing or too slow, and the status counters lag. The stream keeps records 24 h: what "
            "is not applied by then is lost from the counts",
            metric=self._iterator_age(fn),
            threshold=seconds * 1000,  # IteratorAge is in milliseconds
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

    def _stats_errors_alarm(self, fn: lambda_.IFunction) -> cloudwatch.Alarm:
        minutes = self._config.alarm_rate_period_minutes
        return self._alarm(
            "StatsErrorsAlarm",
            description=f"The stats aggregator failed in the last {minutes} minutes: its batch is retried and "
            "that stream shard's counts wait until it succeeds; records not applied within 24 h are lost from the "
            "counts",
            metric=fn.metric_errors(period=self._rate_period, statistic="Sum"),
            threshold=0,
            evaluation_periods=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

    def _alarm(
        self,
        construct_id: str,
        *,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        evaluation_periods: int,
        comparison: cloudwatch.ComparisonOperator,
        datapoints_to_alarm: int | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm of the service. Missing data is never a failure: every metric here is only emitted while there is
        work (an idle lane, a quiet stream, no requests)."""
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    @staticmethod
    def _iterator_age(fn: lambda_.IFunction, label: str | None = None) -> cloudwatch.Metric:
        """How far behind its stream a stream-triggered function is: the age of a batch's last record, in ms."""
        return fn.metric("IteratorAge", statistic="Maximum", period=_MINUTE, label=label)

    def _error_rate(self, fn: lambda_.IFunction, label: str, key: str) -> cloudwatch.MathExpression:
        """100 * errors / invocations of a function; ``key`` keeps the metric ids apart when graphed together."""
        period = self._rate_period
        errors, invocations = f"errors_{key}", f"invocations_{key}"
        return cloudwatch.MathExpression(
            expression=f"IF({invocations} > 0, 100 * {errors} / {invocations}, 0)",
            using_metrics={
                errors: fn.metric_errors(period=period, statistic="Sum"),
                invocations: fn.metric_invocations(period=period, statistic="Sum"),
            },
            label=label,
            period=period,
        )

    # Dashboard

    def _custom(self, name: str) -> cloudwatch.Metric:
        """One of the service's counters, summed per minute."""
        return cloudwatch.Metric(
            namespace=self._config.metrics_namespace,
            metric_name=name,
            dimensions_map={"service": self._config.service_name},
            statistic="Sum",
            period=_MINUTE,
            label=name,
        )

    @staticmethod
    def _graph(
        *,
        title: str,
        left: Sequence[cloudwatch.IMetric],
        width: int,
        annotations: Sequence[cloudwatch.HorizontalAnnotation] | None = None,
    ) -> cloudwatch.GraphWidget:
        """A graph of the dashboard: counts, ages and durations, all drawn from zero, one row high."""
        return cloudwatch.GraphWidget(
            title=title,
            left=list(left),
            left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
            left_annotations=list(annotations) if annotations else None,
            width=width,
            height=_HEIGHT,
        )

    def _add_widgets(
        self,
        lanes: Sequence[MonitoredLane],
        api_function: lambda_.IFunction,
        api_stage: apigwv2.HttpStage,
        sweeper_function: lambda_.IFunction,
        stats_aggregator_function: lambda_.IFunction,
    ) -> None:
        dashboard = self.dashboard
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=list(self.alarms),
                width=24,
                height=3,
                sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
            )
        )
        # Jobs, all lanes together (per minute): their flow from the queues' own metrics, then the service's
        # metrics of what went wrong. Job durations: the consumers' duration below (Lambda's own metric).
        dashboard.add_widgets(
            self._graph(
                title="Jobs per minute (queue messages, all lanes)",
                left=[self._all_lanes(lanes, label, name) for label, name in JOB_FLOW_SQS_METRICS.items()],
                width=_WIDE,
            ),
            self._graph(
                title="Failures, retries, throttling and odd messages per minute",
                left=[self._custom(name) for name in JOB_TROUBLE_METRICS],
                width=_WIDE,
            ),
        )
        # Queues: one line per lane.
        dashboard.add_widgets(
            self._graph(
                title="Queue depth (visible messages)",
                left=[
                    lane.queue.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic="Maximum", label=lane.name
                    )
                    for lane in lanes
                ],
                width=_THIRD,
            ),
            self._graph(
                title="Age of the oldest message (s)",
                left=[
                    lane.queue.metric_approximate_age_of_oldest_message(
                        period=_MINUTE, statistic="Maximum", label=lane.name
                    )
                    for lane in lanes
                ],
                annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=self._config.queue_age_alarm_seconds, label="Normal/high lane alarm"
                    )
                ],
                width=_THIRD,
            ),
            self._graph(
                title="Dead-letter queue depth",
                left=[
                    lane.dlq.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic="Maximum", label=f"{lane.name} DLQ"
                    )
                    for lane in lanes
                ],
                width=_THIRD,
            ),
        )
        # Consumers: one graph of invocations/errors/throttles per lane, then durations and error rates.
        dashboard.add_widgets(
            *(self._function_counts_widget(f"{lane.name} consumer", lane.consumer, _THIRD) for lane in lanes)
        )
        dashboard.add_widgets(
            self._graph(
                title="Consumer duration (ms)",
                left=[
                    lane.consumer.metric_duration(period=_MINUTE, statistic=stat, label=f"{lane.name} {stat}")
                    for lane in lanes
                    for stat in ("p50", "p99")
                ],
                width=_WIDE,
            ),
            self._graph(
                title=f"Consumer error rate (%, {self._config.alarm_rate_period_minutes} min)",
                left=[self._error_rate(lane.consumer, lane.name, lane.name.lower()) for lane in lanes],
                annotations=[
                    cloudwatch.HorizontalAnnotation(value=self._config.consumer_error_rate_alarm_percent, label="Alarm")
                ],
                width=_WIDE,
            ),
        )
        # The API: API Gateway's view (requests, 4XX/5XX, latency) and its function's.
        dashboard.add_widgets(
            self._graph(
                title="API requests and errors",
                left=[
                    api_stage.metric_count(period=_MINUTE, statistic="Sum", label="Requests"),
                    api_stage.metric_client_error(period=_MINUTE, statistic="Sum", label="4XX"),
                    api_stage.metric_server_error(period=_MINUTE, statistic="Sum", label="5XX"),
                ],
                width=_THIRD,
            ),
            self._graph(
                title="API latency (ms)",
                left=[
                    api_stage.metric_latency(period=_MINUTE, statistic=stat, label=f"Latency {stat}")
                    for stat in ("p50", "p99")
                ]
                + [
                    api_function.metric_duration(period=_MINUTE, statistic=stat, label=f"Function {stat}")
                    for stat in ("p50", "p99")
                ],
                width=_THIRD,
            ),
            self._function_counts_widget("API function", api_function, _THIRD),
        )
        # The sweeper: what it released and re-sent, and whether it runs.
        dashboard.add_widgets(
            self._graph(
                title="Sweeper: released and re-sent per minute",
                left=[self._custom(name) for name in SWEEPER_METRICS],
                width=_WIDE,
            ),
            self._function_counts_widget("Sweeper function", sweeper_function, _WIDE),
        )
        # The stats aggregator: how far behind the jobs table's stream it is, and whether it fails.
        dashboard.add_widgets(
            self._graph(
                title="Stats aggregator: iterator age (ms)",
                left=[self._iterator_age(stats_aggregator_function, "IteratorAge Maximum")],
                annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=self._config.stats_stream.iterator_age_alarm_seconds * 1000, label="Alarm"
                    )
                ],
                width=_WIDE,
            ),
            self._function_counts_widget("Stats aggregator function", stats_aggregator_function, _WIDE),
        )

    @staticmethod
    def _all_lanes(lanes: Sequence[MonitoredLane], label: str, metric_name: str) -> cloudwatch.MathExpression:
        """The per-minute sum of one SQS metric over every lane's queue."""
        key = metric_name.lower()
        inputs = {
            f"{key}_{lane.name.lower()}": lane.queue.metric(metric_name, period=_MINUTE, statistic="Sum")
            for lane in lanes
        }
        # A lane with no data in a minute counts 0 there, rather than blanking the sum.
        expression = " + ".join(f"FILL({name}, 0)" for name in inputs)
        return cloudwatch.MathExpression(expression=expression, using_metrics=inputs, label=label, period=_MINUTE)

    def _function_counts_widget(self, name: str, fn: lambda_.IFunction, width: int) -> cloudwatch.GraphWidget:
        return self._graph(
            title=f"{name}: invocations, errors, throttles",
            left=self._lambda_counts(fn),
            width=width,
        )

    @staticmethod
    def _lambda_counts(fn: lambda_.IFunction) -> list[cloudwatch.IMetric]:
        return [
            fn.metric_invocations(period=_MINUTE, statistic="Sum", label="Invocations"),
            fn.metric_errors(period=_MINUTE, statistic="Sum", label="Errors"),
            fn.metric_throttles(period=_MINUTE, statistic="Sum", label="Throttles"),
        ]
