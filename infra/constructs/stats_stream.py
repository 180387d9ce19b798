"""The stats aggregator: a function that reads the jobs table's stream and applies each status change to the
per-tenant status counters and the per-minute throughput (the stats table), instead of the job's own transaction."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.config import ServiceConfig
from infra.constructs.function import FunctionRuntime, ServiceFunction
from infra.constructs.tables import JobsTables

STATS_STREAM_HANDLER = "functions.handlers.stats_stream.handler"
# Lambda's value for "retry until the record expires from the stream" (DynamoDB streams keep records 24 h).
UNBOUNDED_RETRIES = -1


class StatsAggregator(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ServiceConfig,
        runtime: FunctionRuntime,
        tables: JobsTables,
        queues: Sequence[sqs.IQueue],
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        stream = config.stats_stream
        self.aggregator = ServiceFunction(
            self,
            "Aggregator",
            runtime=runtime,
            handler=STATS_STREAM_HANDLER,
            description="Applies the jobs table's stream to the per-tenant status counters and per-minute throughput",
            timeout_seconds=stream.timeout_seconds,
            memory_mb=stream.memory_mb,
            environment=environment,
        )
        self.function: lambda_.Function = self.aggregator.function

        # Each stats item keeps, per stream shard, the last sequence number applied to it (moved in the same
        # conditional write as its counts), so a batch delivered again is applied once. That needs whole batches,
        # in order, one at a time per shard; grants the stream read actions (DescribeStream, GetRecords,
        # GetShardIterator on the stream, ListStreams) to the role.
        self.event_source = event_sources.DynamoEventSource(
            tables.jobs,
            # From the oldest record kept, so nothing written before the mapping exists is missed.
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=stream.batch_size,
            # The tumbling window is what makes Lambda put shardId in the event (what the items' entries are per).
            tumbling_window=Duration.seconds(stream.window_seconds),
            max_batching_window=Duration.seconds(stream.batching_window_seconds),
            # One batch per shard in flight, so batches are applied in the shard's order.
            parallelization_factor=1,
            # Bisecting would deliver partial batches again, out of the shard's order.
            bisect_batch_on_error=False,
            # A failing batch is retried (and its shard waits) until its records expire: skipping it would lose
            # counts for good. No ReportBatchItemFailures either: a batch is applied whole or not at all.
            retry_attempts=UNBOUNDED_RETRIES,
            # Only the record kinds the function uses (config.stats_stream.event_names: INSERT and MODIFY): every
            # expiry of a final job puts a REMOVE record on the stream, which the function would skip, and a record
            # filtered out here costs no invocation.
            filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.or_(*stream.event_names)})],
        )
        self.aggregator.target.add_event_source(self.event_source)

        # One conditional UpdateItem per stats item and batch (logic/stats_stream.py): no read, no transaction.
        self.aggregator.allow(["dynamodb:UpdateItem"], [tables.stats.table_arn])
        # Dependencies (functions/logic/dependencies.py): a final job's dependents, a new waiting job's dependencies.
        # The dependencies table: markers and edges read (BatchGetItem, Query), an edge resolved in a
        # TransactWriteItems (UpdateItem), edges whose dependent no longer waits deleted (BatchWriteItem). The jobs
        # table: records read (BatchGetItem, GetItem), the dependent's waitingOn decremented in that transaction
        # (UpdateItem), a dependent released or cancelled (PutItem); a cancelled dependent's batch is settled as the
        # consumer settles it (GetItem, UpdateItem, PutItem). A released job, or a cancelled one's callback, goes to
        # its lane.
        self.aggregator.allow(
            ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            [tables.dependencies.table_arn],
        )
        self.aggregator.allow(
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [tables.jobs.table_arn],
        )
        self.aggregator.allow(["sqs:SendMessage"], [queue.queue_arn for queue in queues])
        NagSuppressions.add_resource_suppressions(
            self.aggregator.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Suppresses every Resource '*' statement of this role (cdk-nag names the finding by "
                    "resource only). The event source's is dynamodb:ListStreams, which supports no resource-level "
                    "permissions: the role may list every stream of the account in this region (names, not data; the "
                    "read actions are scoped to the jobs table's stream). tests/iam asserts no other Resource '*'.",
                    applies_to=["Resource::*"],
                )
            ],
            apply_to_children=True,
        )
