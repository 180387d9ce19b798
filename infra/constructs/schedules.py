"""Recurring schedules: their table, with the sparse due-time index the sweeper fires them from, and who may use it.

The sweeper (already run every minute) fires due schedules from the index, so a schedule adds no AWS resource, no
control-plane call and no invocation of its own (docs/schedules.md compares this with EventBridge Scheduler).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.dal.schedules import DUE_INDEX, DUE_INDEX_KEYS
from functions.settings import Settings
from infra.constructs.function import ServiceFunction

# The setting every function reads the table's name from (Settings.schedules_table).
SCHEDULES_TABLE_SETTING = next(name for name in Settings().to_env() if name.endswith("_SCHEDULES_TABLE"))


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class ScheduleTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.RETAIN):
        super().__init__(scope, construct_id)
        # pk: the tenant; sk: schedule#<id> (the schedule) or name#<name> (its name's claim), see dal/schedules.py.
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=_string("pk"),
            sort_key=_string("sk"),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )
        partition, sort = DUE_INDEX_KEYS
        # Sparse (only enabled schedules carry dueShard) and whole items: the sweeper fires from it without a read.
        self.table.add_global_secondary_index(
            index_name=DUE_INDEX,
            partition_key=_string(partition),
            sort_key=_string(sort),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def due_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{DUE_INDEX}"

    def grant_api(self, api: ServiceFunction) -> None:
        # Create (a transaction of two Puts: the schedule and its name's claim), get, list (the tenant's partition),
        # change (a conditional Put) and delete (a transaction of two Deletes).
        api.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], [self.table.table_arn]
        )

    def grant_sweeper(self, sweeper: ServiceFunction) -> None:
        # Reads the due schedules from the index (whole items) and moves each on with a conditional Put.
        sweeper.allow(["dynamodb:Query"], [self.due_index_arn])
        sweeper.allow(["dynamodb:PutItem"], [self.table.table_arn])

    def name_in_every_function(self, stack: Stack) -> None:
        """Every function's settings name the table, as they name the other tables (call once all exist)."""
        for node in stack.node.find_all():
            if isinstance(node, lambda_.Function):
                node.add_environment(SCHEDULES_TABLE_SETTING, self.table.table_name)
