"""The sweeper: a scheduled function that hands due scheduled jobs to SQS and re-sends lost pending ones."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import ServiceConfig
from infra.constructs.function import FunctionRuntime, ServiceFunction
from infra.constructs.tables import INDEX_BY_SWEEP, JobsTables

SWEEPER_HANDLER = "functions.handlers.sweeper.handler"


class Sweeper(Construct):
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
        self.sweeper = ServiceFunction(
            self,
            "Sweeper",
            runtime=runtime,
            handler=SWEEPER_HANDLER,
            description="Releases due scheduled jobs and re-sends pending jobs whose message was lost",
            timeout_seconds=config.sweeper_timeout_seconds,
            memory_mb=config.sweeper_memory_mb,
            environment=environment,
        )

        # EventBridge schedules have a one-minute granularity.
        minutes = max(1, config.sweeper_interval_seconds // 60)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Runs the job sweeper",
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
        )
        # A missed or failed sweep is simply done by the next one: no retries, no stale events.
        self.rule.add_target(
            targets.LambdaFunction(self.sweeper.target, retry_attempts=0, max_event_age=Duration.minutes(minutes))
        )
        self.sweeper.target.configure_async_invoke(retry_attempts=0)

        self.sweeper.allow(["dynamodb:Query"], [tables.jobs_index_arn(INDEX_BY_SWEEP)])
        # It reads the due records by key (its index holds keys only) and rewrites the job's sweep mark with a
        # conditional PutItem (the repository's ``save``) or UpdateItem (``move_sweep_mark``). A job it ends as
        # failed may be its batch's last: it reads the batch item (GetItem) and settles it (UpdateItem, with a
        # PutItem for the onComplete job in the same transaction; no ConditionCheck items).
        self.sweeper.allow(
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [tables.jobs.table_arn],
        )
        # Due jobs, lost messages and lost callbacks go to their own lane (normal, high or ordered).
        self.sweeper.allow(["sqs:SendMessage"], [queue.queue_arn for queue in queues])
