"""Alarms on the two signals that mean jobs are not getting done: dead letters (any lane), and a queue that is not
draining."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import ServiceConfig


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ServiceConfig,
        queue: sqs.IQueue,
        dlq: sqs.IQueue,
        high_queue: sqs.IQueue | None = None,
        lane_dlqs: Mapping[str, sqs.IQueue] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
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
        # Subscribe e-mail, chat or paging to this topic.
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{config.service_name} alarms", master_key=self.key, enforce_ssl=True
        )
        action = cloudwatch_actions.SnsAction(self.topic)

        # The consumers dead-letter jobs themselves (attempts exhausted), and SQS does after max_receive_count: any
        # message in a DLQ (one per lane) is a job that needs a person.
        self.dlq_alarm = self._dead_letters_alarm("DeadLettersAlarm", dlq, "Jobs reached the dead-letter queue")
        self.lane_dlq_alarms = [
            self._dead_letters_alarm(f"{lane}DeadLettersAlarm", lane_dlq, f"Jobs reached the {lane.lower()} lane's DLQ")
            for lane, lane_dlq in (lane_dlqs or {}).items()
        ]
        # Scheduled jobs only reach the queue shortly before they are due, so old messages mean a stuck consumer.
        # (Not on the ordered lane: there a group legitimately waits behind its failing job's retries.)
        self.queue_age_alarm = self._queue_age_alarm("QueueAgeAlarm", queue, config, "job message")
        self.lane_age_alarms = (
            [self._queue_age_alarm("HighQueueAgeAlarm", high_queue, config, "high-priority job message")]
            if high_queue is not None
            else []
        )
        for alarm in (self.dlq_alarm, self.queue_age_alarm, *self.lane_dlq_alarms, *self.lane_age_alarms):
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _dead_letters_alarm(self, construct_id: str, dlq: sqs.IQueue, description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _queue_age_alarm(
        self, construct_id: str, queue: sqs.IQueue, config: ServiceConfig, what: str
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=f"The oldest {what} is older than {config.queue_age_alarm_seconds} s",
            metric=queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=config.queue_age_alarm_seconds,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
