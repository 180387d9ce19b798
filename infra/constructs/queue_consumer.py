"""The job queues: three lanes, each a queue with its own dead-letter queue and its own consumer function.

- normal: every job without a group below the priority threshold, and completion callbacks;
- high: jobs at or above ``high_priority_threshold``, so that a backlog of normal jobs never delays them;
- ordered: jobs with a ``groupId``, through a FIFO queue (one message group per tenant and group).

Each consumer has its own role: it consumes its own queue (the event source mapping grants receive/delete), defers
its own messages, dead-letters to its own DLQ, and may send to every lane (a job re-sent after a limit, a callback,
a batch's onComplete job go to their own lane).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.config import BedrockModel, ServiceConfig
from infra.constructs.files import JOB_OUTPUTS, PAYLOADS, UPLOADS, FilesBucket
from infra.constructs.function import FunctionRuntime, ServiceFunction, service_environment
from infra.constructs.tables import JobsTables

CONSUMER_HANDLER = "functions.handlers.consumer.handler"
# The FIFO lane's entry point: a failed record fails only the rest of its own group in the batch.
ORDERED_CONSUMER_HANDLER = "functions.handlers.consumer.ordered_handler"


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
        self._config = config
        queue_config = config.queue

        self.dlq, self.queue = self._lane_queues("", queue_config.max_receive_count)
        self.high_dlq, self.high_queue = self._lane_queues("High", queue_config.max_receive_count)
        # FIFO: the queue and its DLQ both (SQS requires it). No content-based deduplication: every send carries a
        # random deduplication id, since the record, not SQS, sorts out duplicates (functions/dal/job_queue.py).
        self.ordered_dlq, self.ordered_queue = self._lane_queues(
            "Ordered", queue_config.ordered_max_receive_count, fifo=True
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
            limits_table=tables.limits.table_name,
            keys_table=tables.keys.table_name,
            dependencies_table=tables.dependencies.table_name,
            high_queue_url=self.high_queue.queue_url,
            high_dlq_url=self.high_dlq.queue_url,
            ordered_queue_url=self.ordered_queue.queue_url,
            ordered_dlq_url=self.ordered_dlq.queue_url,
        )

        consumer = config.consumer
        self.consumer = self._consumer(
            "Consumer",
            CONSUMER_HANDLER,
            "Runs queued jobs (SQS event source, partial batch responses)",
            self.queue,
            self.dlq,
            runtime=runtime,
            job_layer=job_layer,
            max_concurrency=consumer.max_concurrency,
            batching_window_seconds=consumer.batching_window_seconds,
        )
        self.high_consumer = self._consumer(
            "HighConsumer",
            CONSUMER_HANDLER,
            "Runs high-priority jobs (their own queue, so a backlog of normal jobs does not delay them)",
            self.high_queue,
            self.high_dlq,
            runtime=runtime,
            job_layer=job_layer,
            max_concurrency=consumer.high_max_concurrency,
            batching_window_seconds=consumer.batching_window_seconds,
        )
        self.ordered_consumer = self._consumer(
            "OrderedConsumer",
            ORDERED_CONSUMER_HANDLER,
            "Runs grouped jobs one at a time per group, in order (FIFO event source)",
            self.ordered_queue,
            self.ordered_dlq,
            runtime=runtime,
            job_layer=job_layer,
            max_concurrency=consumer.ordered_max_concurrency,
            batching_window_seconds=None,  # Lambda supports no batching window on FIFO queues
        )
        self.consumers = (self.consumer, self.high_consumer, self.ordered_consumer)
        for fn in self.consumers:
            self._grant_records(fn, tables)
            self._grant_job_types(fn, config, tables, files)

    @property
    def queues(self) -> Sequence[sqs.IQueue]:
        """The three lanes' queues: what the API, the sweeper and the consumers send jobs to."""
        return (self.queue, self.high_queue, self.ordered_queue)

    @property
    def dead_letter_queues(self) -> Sequence[sqs.IQueue]:
        return (self.dlq, self.high_dlq, self.ordered_dlq)

    def _lane_queues(self, prefix: str, max_receive_count: int, *, fifo: bool = False) -> tuple[sqs.Queue, sqs.Queue]:
        """A lane's DLQ and queue (construct ids "<prefix>DeadLetterQueue" and "<prefix>Queue")."""
        queue_config = self._config.queue
        # A message redriven from the DLQ keeps its first enqueue time: the DLQ must keep it longer than the
        # source did, or a redrive could deliver messages already due to expire.
        if not queue_config.retention_days < queue_config.dlq_retention_days <= 14:
            raise ValueError(
                f"queue retention ({queue_config.retention_days} d) must be shorter than the DLQ's "
                f"({queue_config.dlq_retention_days} d), which SQS caps at 14 days"
            )
        retention = Duration.days(queue_config.retention_days)
        # FIFO lanes use high-throughput mode: throughput and deduplication are per message group, i.e. per
        # (tenant, group), not per queue.
        fifo_options = {
            "fifo": True if fifo else None,
            "content_based_deduplication": False if fifo else None,
            "deduplication_scope": sqs.DeduplicationScope.MESSAGE_GROUP if fifo else None,
            "fifo_throughput_limit": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID if fifo else None,
        }
        dlq = sqs.Queue(
            self,
            f"{prefix}DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(queue_config.dlq_retention_days),
            **fifo_options,  # type: ignore[arg-type]
        )
        NagSuppressions.add_resource_suppressions(
            dlq,
            [NagPackSuppression(id="AwsSolutions-SQS3", reason="This queue is the dead-letter queue itself.")],
        )
        queue = sqs.Queue(
            self,
            f"{prefix}Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
            # At least 6x the consumer timeout (AWS's advice for Lambda event sources), so a batch still being
            # worked on is not handed to a second consumer.
            visibility_timeout=Duration.seconds(self._config.queue_visibility_timeout_seconds),
            # A safety net for crashes and poison messages; the consumer dead-letters exhausted jobs itself.
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=max_receive_count, queue=dlq),
            **fifo_options,  # type: ignore[arg-type]
        )
        return dlq, queue

    def _consumer(
        self,
        construct_id: str,
        handler: str,
        description: str,
        queue: sqs.Queue,
        dlq: sqs.Queue,
        *,
        runtime: FunctionRuntime,
        job_layer: lambda_.ILayerVersion,
        max_concurrency: int,
        batching_window_seconds: int | None,
    ) -> ServiceFunction:
        consumer = self._config.consumer
        fn = ServiceFunction(
            self,
            construct_id,
            runtime=runtime,
            handler=handler,
            description=description,
            timeout_seconds=consumer.timeout_seconds,
            memory_mb=consumer.memory_mb,
            environment=self.environment,
            # The job types' third-party packages (Pillow, ...): only the consumers run jobs.
            extra_layers=[job_layer],
        )
        # Grants receive/delete (and reading the queue's attributes) to the role.
        fn.target.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=consumer.batch_size,
                max_batching_window=(
                    Duration.seconds(batching_window_seconds) if batching_window_seconds is not None else None
                ),
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )
        # Deferring a message (backoff, not-yet-due, a limit) sets its visibility; the queue URL is looked up by ARN.
        fn.allow(["sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"], [queue.queue_arn])
        # Jobs out of attempts (and malformed messages) are moved to the lane's DLQ by the consumer, with a reason.
        fn.allow(["sqs:SendMessage"], [dlq.queue_arn])
        # A job re-sent after a limit, a completion callback, a batch's onComplete job: each to its own lane.
        fn.allow(["sqs:SendMessage"], [q.queue_arn for q in self.queues])
        return fn

    @staticmethod
    def _grant_records(fn: ServiceFunction, tables: JobsTables) -> None:
        # Job records: read, write conditionally (the condition is each write's own: no ConditionCheckItem).
        fn.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [tables.jobs.table_arn])
        # Per-type limits: rate windows and concurrency slots, shared by all consumers (functions/dal/limits.py);
        # slots are read together with BatchGetItem, never one by one. A job type's pause flag is read by key.
        fn.allow(
            [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
            [tables.limits.table_arn],
        )

    @staticmethod
    def _grant_job_types(fn: ServiceFunction, config: ServiceConfig, tables: JobsTables, files: FilesBucket) -> None:
        """What the built-in job types call, each scoped to the resources it touches (any job can take any lane)."""
        settings = config.settings()
        # Inputs: uploads (image jobs) and offloaded payloads; outputs: one prefix per producing job type.
        fn.allow(["s3:GetObject"], [files.objects(UPLOADS), files.objects(PAYLOADS)])
        fn.allow(["s3:PutObject"], [files.objects(prefix) for prefix in JOB_OUTPUTS])
        # send-email: from the configured sender only (its address identity, or its domain's when that is verified).
        # Without a sender the API refuses send-email jobs, and nothing may send mail.
        if settings.email_sender:
            fn.allow(["ses:SendEmail"], ses_identity_arns(settings.email_sender))
        # generate-embedding / generate-content: the configured models, inference profiles with the foundation
        # model they route to in each of their regions (Converse is authorised as InvokeModel).
        fn.allow(["bedrock:InvokeModel"], bedrock_model_arns(config.granted_bedrock_models))
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


def foundation_model_arn(model_id: str, region: str = Aws.REGION) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{model_id}"


def inference_profile_arn(profile_id: str) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{profile_id}"


def bedrock_model_arns(models: Sequence[BedrockModel]) -> list[str]:
    """What bedrock:InvokeModel needs for each allowed model: a foundation model in this region; an inference profile
    itself and its foundation model in every region the profile may route a request to."""
    arns: list[str] = []
    for model in models:
        if model.is_inference_profile:
            arns.append(inference_profile_arn(model.id))
            arns.extend(foundation_model_arn(model.foundation_model, region) for region in model.regions)
        else:
            arns.append(foundation_model_arn(model.id))
    return list(dict.fromkeys(arns))


def webhook_secrets_arn(prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:secret:{prefix}*"


def object_finding(prefix: str) -> dict[str, str]:
    """How cdk-nag names an object-prefix resource of the files bucket in an IAM5 finding."""
    return {"regex": f"/^Resource::<FilesBucket[A-Za-z0-9]+\\.Arn>\\/{prefix[:-1]}\\/\\*$/g"}
