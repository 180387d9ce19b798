"""The job queue, its dead-letter queue, and the consumer function fed by the queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.config import ServiceConfig
from infra.constructs.function import FunctionRuntime, ServiceFunction, service_environment
from infra.constructs.tables import JobsTables

CONSUMER_HANDLER = "functions.handlers.consumer.handler"


class JobQueueConsumer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ServiceConfig,
        runtime: FunctionRuntime,
        tables: JobsTables,
    ) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.days(config.queue.retention_days)

        self.dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
        )
        NagSuppressions.add_resource_suppressions(
            self.dlq,
            [NagPackSuppression(id="AwsSolutions-SQS3", reason="This queue is the dead-letter queue itself.")],
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
            # At least 6x the consumer timeout (AWS's advice for Lambda event sources), so a batch still being
            # worked on is not handed to a second consumer.
            visibility_timeout=Duration.seconds(config.queue_visibility_timeout_seconds),
            # A safety net for crashes and poison messages; the consumer dead-letters exhausted jobs itself.
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=config.queue.max_receive_count, queue=self.dlq),
        )

        # Every function gets the same settings; this is where the queue URLs first exist.
        self.environment = service_environment(
            config,
            jobs_table=tables.jobs.table_name,
            stats_table=tables.stats.table_name,
            queue_url=self.queue.queue_url,
            dlq_url=self.dlq.queue_url,
        )

        consumer = config.consumer
        self.consumer = ServiceFunction(
            self,
            "Consumer",
            runtime=runtime,
            handler=CONSUMER_HANDLER,
            description="Runs queued jobs (SQS event source, partial batch responses)",
            timeout_seconds=consumer.timeout_seconds,
            memory_mb=consumer.memory_mb,
            environment=self.environment,
        )
        # Grants receive/delete (and reading the queue's attributes) to the role.
        self.consumer.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=consumer.batch_size,
                max_batching_window=Duration.seconds(consumer.batching_window_seconds),
                report_batch_item_failures=True,
                max_concurrency=consumer.max_concurrency,
            )
        )

        # Job records: read, write conditionally (PutItem alone or inside TransactWriteItems).
        self.consumer.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
            [tables.jobs.table_arn],
        )
        # Counters move in the same transaction as the status change.
        self.consumer.allow(["dynamodb:UpdateItem"], [tables.stats.table_arn])
        # Deferring a message (backoff, not-yet-due) sets its visibility; the queue URL is looked up by ARN.
        self.consumer.allow(["sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"], [self.queue.queue_arn])
        # Jobs out of attempts (and malformed messages) are moved to the DLQ by the consumer, with a reason.
        self.consumer.allow(["sqs:SendMessage"], [self.dlq.queue_arn])
