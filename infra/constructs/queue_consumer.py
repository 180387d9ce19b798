"""The job queue, its dead-letter queue, and the consumer function fed by the queue."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.config import ServiceConfig
from infra.constructs.files import JOB_OUTPUTS, PAYLOADS, UPLOADS, FilesBucket
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
        files: FilesBucket,
        job_layer: lambda_.ILayerVersion,
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
            files_bucket=files.bucket.bucket_name,
            imports_table=tables.imports.table_name,
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
            # The job types' third-party packages (Pillow, ...): only the consumer runs jobs.
            extra_layers=[job_layer],
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

        self._grant_job_types(config, tables, files)

    def _grant_job_types(self, config: ServiceConfig, tables: JobsTables, files: FilesBucket) -> None:
        """What the built-in job types call, each scoped to the resources it touches."""
        settings = config.settings()
        fn = self.consumer
        # Inputs: uploads (image jobs) and offloaded payloads; outputs: one prefix per producing job type.
        fn.allow(["s3:GetObject"], [files.objects(UPLOADS), files.objects(PAYLOADS)])
        fn.allow(["s3:PutObject"], [files.objects(prefix) for prefix in JOB_OUTPUTS])
        # send-email: from the configured sender only (its address identity, or its domain's when that is verified).
        fn.allow(["ses:SendEmail"], ses_identity_arns(settings.email_sender))
        # generate-embedding / generate-content: the two configured models (Converse is authorised as InvokeModel).
        fn.allow(
            ["bedrock:InvokeModel"],
            [foundation_model_arn(settings.bedrock_embedding_model), foundation_model_arn(settings.bedrock_text_model)],
        )
        # batch-import: batches of 25, and single puts for retried leftovers.
        fn.allow(["dynamodb:BatchWriteItem"], [tables.imports.table_arn])
        # webhook-delivery: per-tenant signing secrets under one prefix, created on first use.
        fn.allow(
            ["secretsmanager:GetSecretValue", "secretsmanager:CreateSecret"],
            [webhook_secrets_arn(settings.webhook_secret_prefix)],
        )
        NagSuppressions.add_resource_suppressions(
            fn.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Job inputs and outputs are objects under fixed prefixes of the files bucket (one key per "
                    "job or upload, unknown in advance); each prefix is granted only the one action the jobs use.",
                    applies_to=[object_finding(prefix) for prefix in (UPLOADS, PAYLOADS, *JOB_OUTPUTS)],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Webhook signing secrets are one per tenant, created on a tenant's first webhook, so their "
                    "names are only known by prefix; the secret ARN also ends in a random suffix Secrets Manager adds.",
                    applies_to=[
                        "Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
                        f"{settings.webhook_secret_prefix}*"
                    ],
                ),
            ],
            apply_to_children=True,
        )


def ses_identity_arns(sender: str) -> list[str]:
    domain = sender.rpartition("@")[2]
    base = f"arn:{Aws.PARTITION}:ses:{Aws.REGION}:{Aws.ACCOUNT_ID}:identity/"
    return [base + sender, base + domain]


def foundation_model_arn(model_id: str) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}::foundation-model/{model_id}"


def webhook_secrets_arn(prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:secret:{prefix}*"


def object_finding(prefix: str) -> dict[str, str]:
    """How cdk-nag names an object-prefix resource of the files bucket in an IAM5 finding."""
    return {"regex": f"/^Resource::<FilesBucket[A-Za-z0-9]+\\.Arn>\\/{prefix[:-1]}\\/\\*$/g"}
