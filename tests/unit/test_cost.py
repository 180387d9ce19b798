"""Each job's own cost: the price arithmetic, the meter, the per-minute sums and GET /stats/cost's report."""

from __future__ import annotations

import math
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.dal import metering
from functions.dal.jobs_repository import StatusChange, StreamDeltas
from functions.logic import cost
from functions.logic.stats_stream import count_change
from functions.models import prices
from functions.models.errors import InvalidQuery
from functions.models.job import Job, JobCost, JobStatus

SHAPE = cost.LambdaShape(memory_mb=1024, architecture="x86_64", api_gateway_type="http")


def a_job(**changes: Any) -> Job:
    base: dict[str, Any] = {
        "id": "j1",
        "tenant": "t1",
        "type": "message",
        "payload": {"message": "hi"},
        "status": JobStatus.PENDING,
        "priority": 5,
        "attempts": 0,
        "max_attempts": 3,
        "created_at": "2026-12-07T00:00:00.000Z",
        "updated_at": "2026-12-07T00:00:00.000Z",
    }
    return Job(**{**base, **changes})


def test_price_adds_each_service_at_its_list_price() -> None:
    # Given one gateway request, one invocation of 100 ms at 1 GB, 2 SQS requests, 3 WRU and 4 RRU
    usd = cost.price(3, 4, 100, 1024, "x86_64", gateway_requests=1, gateway_type="rest", invocations=1, sqs_requests=2)
    # Then it is the sum of the list prices
    expected = (
        prices.APIGW_REST_REQUEST
        + prices.LAMBDA_REQUEST
        + 0.1 * prices.LAMBDA_GB_SECOND["x86_64"]
        + 2 * prices.SQS_REQUEST
        + 3 * prices.DDB_WRITE_UNIT
        + 4 * prices.DDB_READ_UNIT
    )
    assert usd == pytest.approx(expected)


def test_lambda_duration_is_billed_by_the_started_millisecond_and_arm_is_cheaper() -> None:
    x86 = cost.price(0, 0, 10.2, 1024, "x86_64")
    arm = cost.price(0, 0, 10.2, 1024, "arm64")
    assert x86 == pytest.approx(0.011 * prices.LAMBDA_GB_SECOND["x86_64"])
    assert arm < x86


def test_http_api_costs_less_than_rest() -> None:
    assert prices.apigw_request("http") == pytest.approx(1.00e-6)
    assert prices.apigw_request("rest") == pytest.approx(3.50e-6)


def test_a_record_write_is_a_unit_per_kb_doubled_in_a_transaction_plus_its_index_entries() -> None:
    small = a_job()
    large = a_job(payload={"message": "x" * 3000})
    assert cost.record_write_units(small, transactional=False, index_entries=3) == 1 + 3
    assert cost.record_write_units(small, transactional=True, index_entries=0) == 2
    assert cost.record_write_units(large, transactional=False, index_entries=0) == math.ceil((3000 + 400) / 1024)


def test_create_prices_the_gateway_the_invocation_the_calls_the_write_and_the_send() -> None:
    # Given a meter that saw one DynamoDB call of 1 RRU
    meter = metering.Meter(requests=1, read_units=1)
    # When the API prices the create of a job it sends now
    job = cost.at_create(a_job(), meter, SHAPE, index_entries=3, transactional=False, sends=True)
    # Then its cost holds the gateway request, the invocation, the read, the create write (1 + 3 entries), the send
    assert job.cost is not None
    assert job.cost.write_units == 4
    assert job.cost.read_units == 1
    assert job.cost.requests == 1 + 1 + 1 + 1 + 1  # the read, the write, the send, the gateway, the invocation
    floor = prices.APIGW_HTTP_REQUEST + prices.LAMBDA_REQUEST + prices.SQS_REQUEST + 4 * prices.DDB_WRITE_UNIT
    assert job.cost.usd >= floor


def test_outside_a_metered_request_nothing_is_priced() -> None:
    job = a_job()
    assert cost.at_create(job, None, SHAPE, 3, False, True) is job
    assert cost.at_final(job, job, None, SHAPE, 2) is job


def test_the_final_transition_adds_the_consumers_part_to_the_apis() -> None:
    api_part = JobCost(usd=1e-5, requests=5, write_units=4, read_units=0, lambda_ms=20)
    before = a_job(status=JobStatus.PROCESSING, cost=api_part)
    after = before.model_copy(update={"status": JobStatus.COMPLETED})
    meter = metering.Meter(requests=1, write_units=2)  # the claim
    final = cost.at_final(before, after, meter, SHAPE, index_entries=2)
    assert final.cost is not None
    assert final.cost.write_units == 4 + 2 + (2 + 2)  # the API's, the claim, the final write (x2) + its index moves
    assert final.cost.requests == 5 + 1 + 1 + 2 + 1  # the API's, the claim, the final write, the ESM's two, the call
    assert final.cost.usd > api_part.usd


def test_cost_is_on_the_wire_only_once_final() -> None:
    spent = JobCost(usd=1e-5, requests=5, write_units=4, read_units=1, lambda_ms=20)
    assert "cost" not in a_job(cost=spent).to_api()
    done = a_job(status=JobStatus.COMPLETED, cost=spent).to_api()
    assert done["cost"] == {"usd": 1e-5, "requests": 5.0, "writeUnits": 4.0, "readUnits": 1.0, "lambdaMs": 20.0}


def test_the_stats_aggregator_sums_final_costs_by_type_per_minute() -> None:
    # Given two completions of one type and a failure of another, in the same minute
    at = "2026-12-07T00:05:10.000Z"
    one = {"usd": 0.000004, "requests": 8, "writeUnits": 9, "readUnits": 1.5, "lambdaMs": 30.5}
    deltas = StreamDeltas(counters={}, throughput={})
    for job_type, after in (("message", "completed"), ("message", "completed"), ("fetch", "failed")):
        count_change(deltas, StatusChange("t1", "processing", after, at, job_type=job_type, cost=one))
    # A creation and a job without a cost add nothing
    count_change(deltas, StatusChange("t1", None, "pending", at, job_type="message", cost=one))
    count_change(deltas, StatusChange("t1", "processing", "completed", at, job_type="message"))
    minute = deltas.throughput[("t1", "2026-12-07T00:05Z")]
    # Then the report's sums come back exact
    items = [{name: {"N": str(value)} for name, value in minute.items()}]
    types = cost.sums_by_type(items)
    assert types["message"] == {
        "jobs": 2,
        "usd": 0.000008,
        "requests": 16,
        "writeUnits": 18,
        "readUnits": 3,
        "lambdaMs": 61,
    }
    assert types["fetch"]["jobs"] == 1
    assert cost.total(types)["jobs"] == 3
    assert minute["completed"] == 3


class FakeStore:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.asked: list[str] = []

    def minute_items(self, tenant: str, minutes: list[str]) -> list[dict[str, Any]]:
        self.asked = minutes
        return self.items


def test_the_report_covers_the_last_minutes_oldest_first() -> None:
    store = FakeStore([{"cost#message#jobs": {"N": "2"}, "cost#message#usd": {"N": "5000000"}}])
    now = 1_780_000_000_000
    report = cost.cost_report(store, "t1", {"minutes": "3"}, now)
    assert report["minutes"] == 3
    assert len(store.asked) == 3 and store.asked == sorted(store.asked)
    assert report["since"] == store.asked[0]
    assert report["types"]["message"]["jobs"] == 2
    assert report["total"]["usd"] == pytest.approx(5e-6)
    assert cost.cost_report(store, "t1", {}, now)["minutes"] == 60


@pytest.mark.parametrize("minutes", ["0", "1441", "-1", "abc", "1.5", "²"])
def test_bad_minutes_are_an_invalid_query(minutes: str) -> None:
    with pytest.raises(InvalidQuery):
        cost.cost_report(FakeStore([]), "t1", {"minutes": minutes}, 0)


@mock_aws
def test_the_meter_counts_calls_and_asks_dynamodb_for_its_consumed_capacity() -> None:
    # Given a table and a metered client
    ddb = metering.attach(boto3.client("dynamodb", region_name="us-east-1"))
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="t", Item={"pk": {"S": "outside"}})  # not metered
    # When calls are made inside a metered block
    with metering.metered() as meter:
        ddb.put_item(TableName="t", Item={"pk": {"S": "a"}})
        ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})
    # Then both are counted, with the capacity DynamoDB returned (moto: 1 per write, 0.5 per read)
    assert meter.requests == 2
    assert meter.write_units == 1
    assert meter.read_units == 0.5
    assert metering.current() is None


def test_the_gateway_price_follows_the_api_type_the_request_came_through() -> None:
    rest = cost.at_create(a_job(), metering.Meter(gateway_type="rest"), cost.LambdaShape.current(), 0, False, False)
    http_meter = metering.Meter(gateway_type="http")
    http = cost.at_create(a_job(), http_meter, cost.LambdaShape.current(http_meter), 0, False, False)
    assert rest.cost is not None and http.cost is not None
    difference = prices.APIGW_REST_REQUEST - prices.APIGW_HTTP_REQUEST
    assert rest.cost.usd - http.cost.usd == pytest.approx(difference, rel=0.05)


def test_a_retried_job_adds_only_its_new_run_to_the_sums() -> None:
    # Given a job that failed (its cost counted then), was retried and completed: its record's cost is cumulative
    at = "2026-12-07T00:05:10.000Z"
    first = {"usd": 0.000004, "requests": 8, "writeUnits": 9, "readUnits": 1, "lambdaMs": 30}
    both = {"usd": 0.000007, "requests": 12, "writeUnits": 14, "readUnits": 2, "lambdaMs": 50}
    deltas = StreamDeltas(counters={}, throughput={})
    count_change(deltas, StatusChange("t1", "processing", "failed", at, job_type="message", cost=first))
    count_change(deltas, StatusChange("t1", "processing", "completed", at, "message", both, cost_before=first))
    minute = deltas.throughput[("t1", "2026-12-07T00:05Z")]
    sums = cost.sums_by_type([{name: {"N": str(value)} for name, value in minute.items()}])["message"]
    # Then the sums hold the job's total once, over its two ends
    assert sums["usd"] == pytest.approx(0.000007)
    assert sums["writeUnits"] == 14
    assert sums["jobs"] == 2


def test_index_entries_follow_the_tables_indexes_a_record_enters_and_leaves() -> None:
    # Given a new pending job marked for the sweeper, and the same job claimed, then completed (or failed)
    created = a_job(status=JobStatus.PENDING, sweep_at="2026-12-07T00:00:10Z")
    claimed = created.model_copy(update={"status": JobStatus.PROCESSING, "sweep_at": None})
    completed = claimed.model_copy(update={"status": JobStatus.COMPLETED, "completed_at": "2026-12-07T00:00:02Z"})
    failed = claimed.model_copy(update={"status": JobStatus.FAILED, "completed_at": "2026-12-07T00:00:02Z"})
    # Then creating it writes its by-tenant entry and the sweep mark (no status entry while unfinished)
    assert cost.create_index_entries(created) == 2
    # and the claim removes the mark; completing writes no status entry (completed is listed by the walk), failing
    # puts one; a moved mark is a delete + put
    assert cost.index_entry_writes(created, claimed) == 1
    assert cost.final_index_entries(claimed, completed) == 0
    assert cost.final_index_entries(claimed, failed) == 1
    assert cost.index_entry_writes(created, created.model_copy(update={"sweep_at": "2026-12-07T00:01:00Z"})) == 2
