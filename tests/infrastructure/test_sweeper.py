"""The sweeper: its schedule and its permissions."""

from __future__ import annotations

from infra.config import AWS_CONFIG
from infra.constructs.sweeper import SWEEPER_HANDLER
from tests.infrastructure.template_utils import (
    Resources,
    arn,
    functions_by_handler,
    jobs_and_stats_tables,
    named_by_setting,
    only,
    permissions_for,
    role_of,
    role_permissions,
    send_to_every_lane,
)


def test_sweeper_runs_every_minute_without_retries(resources: Resources) -> None:
    # Given the schedule rule and the sweeper function
    sweeper_id, sweeper = functions_by_handler(resources)[SWEEPER_HANDLER]
    _, rule = only(resources, "AWS::Events::Rule")
    (target,) = rule["Properties"]["Targets"]

    # Then it invokes the sweeper at the configured rate, and a failed sweep is left to the next one
    assert AWS_CONFIG.sweeper_interval_seconds == 60
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert target["Arn"] == {"Fn::GetAtt": [sweeper_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert sweeper["Timeout"] == AWS_CONFIG.sweeper_timeout_seconds


def test_sweeper_queries_only_the_sweep_index_and_sends_to_the_main_queue(resources: Resources) -> None:
    # Given the sweeper's role and the resources it works on
    (jobs_id, _), _ = jobs_and_stats_tables(resources)
    _, sweeper = functions_by_handler(resources)[SWEEPER_HANDLER]
    jobs = arn(jobs_id)

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(sweeper))

    # Then it may query the by-sweep index (not the table, not the other indexes), read and rewrite job records and
    # the batch items of the jobs it ends
    schedules_id, _ = named_by_setting(resources, "JOBS_SCHEDULES_TABLE")
    assert permissions_for(pairs, "dynamodb") == {
        ("dynamodb:Query", jobs + "/index/by-sweep"),
        # and fire the due recurring schedules: query their due-time index, move each on (a conditional Put)
        ("dynamodb:Query", arn(schedules_id) + "/index/by-due"),
        ("dynamodb:PutItem", arn(schedules_id)),
        ("dynamodb:BatchGetItem", jobs),
        ("dynamodb:GetItem", jobs),
        ("dynamodb:PutItem", jobs),
        ("dynamodb:UpdateItem", jobs),
    }
    # And send job messages to the lanes' queues only (not to a DLQ)
    assert permissions_for(pairs, "sqs") == send_to_every_lane(resources)
