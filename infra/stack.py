"""The service stack: composes one construct per capability; all names and tunables come from ``infra.config``."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import AWS_CONFIG, ServiceConfig
from infra.constructs.api import JobsApi
from infra.constructs.files import FilesBucket
from infra.constructs.function import FunctionRuntime
from infra.constructs.job_layer import JobDependenciesLayer
from infra.constructs.monitoring import MonitoredLane, Monitoring
from infra.constructs.queue_consumer import JobQueueConsumer
from infra.constructs.schedules import ScheduleTable
from infra.constructs.stats_stream import StatsAggregator
from infra.constructs.sweeper import Sweeper
from infra.constructs.tables import JobsTables


class ServiceStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: ServiceConfig = AWS_CONFIG, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("service", config.service_name)

        runtime = FunctionRuntime(self, "FunctionRuntime", config=config)
        self.tables = JobsTables(self, "Tables")
        self.files = FilesBucket(self, "Files")
        self.job_layer = JobDependenciesLayer(self, "JobDependencies", config=config)
        self.queue = JobQueueConsumer(
            self,
            "JobQueue",
            config=config,
            runtime=runtime,
            tables=self.tables,
            files=self.files,
            job_layer=self.job_layer.layer,
        )
        self.sweeper = Sweeper(
            self,
            "Sweeper",
            config=config,
            runtime=runtime,
            tables=self.tables,
            queues=self.queue.queues,
            environment=self.queue.environment,
        )
        self.stats_aggregator = StatsAggregator(
            self,
            "StatsAggregator",
            config=config,
            runtime=runtime,
            tables=self.tables,
            queues=self.queue.queues,
            environment=self.queue.environment,
        )
        self.api = JobsApi(
            self,
            "Api",
            config=config,
            runtime=runtime,
            tables=self.tables,
            queues=self.queue.queues,
            files=self.files,
            environment=self.queue.environment,
        )
        # Recurring schedules: managed through the API, fired by the sweeper.
        self.schedules = ScheduleTable(self, "Schedules")
        self.schedules.grant_api(self.api.handler)
        self.schedules.grant_sweeper(self.sweeper.sweeper)
        self.schedules.name_in_every_function(self)
        lanes = self.queue
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            lanes=[
                MonitoredLane("Normal", lanes.queue, lanes.dlq, lanes.consumer.function),
                MonitoredLane("High", lanes.high_queue, lanes.high_dlq, lanes.high_consumer.function),
                MonitoredLane("Ordered", lanes.ordered_queue, lanes.ordered_dlq, lanes.ordered_consumer.function),
            ],
            api_function=self.api.handler.function,
            api_stage=self.api.stage,
            sweeper_function=self.sweeper.sweeper.function,
            stats_aggregator_function=self.stats_aggregator.function,
        )

        CfnOutput(self, "ApiUrl", value=self.api.api.api_endpoint, description="Base URL of the job API (HTTP API)")
        CfnOutput(
            self,
            "KeysTableName",
            value=self.tables.keys.table_name,
            description="Tenant API keys (hashed): jobs keys create --tenant NAME --stack <this stack>",
        )
        CfnOutput(self, "QueueUrl", value=self.queue.queue.queue_url)
        CfnOutput(self, "DlqUrl", value=self.queue.dlq.queue_url)
        CfnOutput(self, "HighQueueUrl", value=self.queue.high_queue.queue_url)
        CfnOutput(self, "HighDlqUrl", value=self.queue.high_dlq.queue_url)
        CfnOutput(self, "OrderedQueueUrl", value=self.queue.ordered_queue.queue_url)
        CfnOutput(self, "OrderedDlqUrl", value=self.queue.ordered_dlq.queue_url)
        CfnOutput(self, "JobsTableName", value=self.tables.jobs.table_name)
        CfnOutput(self, "StatsTableName", value=self.tables.stats.table_name)
        CfnOutput(self, "ImportsTableName", value=self.tables.imports.table_name)
        CfnOutput(self, "LimitsTableName", value=self.tables.limits.table_name)
        CfnOutput(self, "DependenciesTableName", value=self.tables.dependencies.table_name)
        CfnOutput(self, "SchedulesTableName", value=self.schedules.table.table_name)
        CfnOutput(self, "FilesBucketName", value=self.files.bucket.bucket_name)
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.monitoring.topic.topic_arn,
            description="Alarm notifications (alarm and OK): subscribe e-mail, chat or paging here",
        )
        CfnOutput(
            self,
            "DashboardName",
            value=self.monitoring.dashboard.dashboard_name,
            description="The CloudWatch dashboard of the service",
        )
