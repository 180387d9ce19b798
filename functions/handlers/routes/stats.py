"""Stats: ``GET /stats`` (counts by status) and ``GET /stats/throughput`` (completions and failures per minute)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.handlers import openapi as doc
from functions.handlers.http import caller_tenant, json_response, read_query
from functions.handlers.runtime import runtime
from functions.logic import cost as job_cost
from functions.logic import manage
from functions.logic.clock import system_clock
from functions.models.bounds import (
    COST_MINUTES_DEFAULT,
    COST_MINUTES_MAX,
    COST_MINUTES_MIN,
    THROUGHPUT_MINUTES_DEFAULT,
    THROUGHPUT_MINUTES_MAX,
    THROUGHPUT_MINUTES_MIN,
)

router = Router()


@router.get(
    "/stats",
    summary="Counts by status",
    description="Exact counts of the tenant's jobs by status, with completion and failure rates.",
    operation_id="getStats",
    tags=["stats"],
    responses={200: doc.ok("Stats", "The tenant's stats"), **doc.keyed_errors()},
)
def stats() -> Response[str]:
    return json_response(200, manage.job_stats(runtime().repo, caller_tenant(router)))


@router.get(
    "/stats/throughput",
    summary="Completions and failures per minute",
    description="One bucket per minute (UTC) of the last `minutes`, oldest first, the current minute last.",
    operation_id="getThroughput",
    tags=["stats"],
    responses={200: doc.ok("Throughput", "The tenant's throughput"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        doc.query_param(
            "minutes",
            "How many minutes",
            doc.integer_schema(THROUGHPUT_MINUTES_MIN, THROUGHPUT_MINUTES_MAX, THROUGHPUT_MINUTES_DEFAULT),
        )
    ),
)
def throughput() -> Response[str]:
    tenant = caller_tenant(router)
    query = read_query(router, {"minutes"})
    return json_response(200, manage.throughput(runtime().repo, tenant, query, system_clock()))


@router.get(
    "/stats/cost",
    summary="Cost by type",
    description="What the tenant's jobs that ended in the last `minutes` cost on AWS, estimated from each job's own "
    "measured calls and time at list prices (the `cost` of each final job), summed by type.",
    operation_id="getCost",
    tags=["stats"],
    responses={200: doc.ok("CostByType", "The tenant's cost by type"), **doc.keyed_errors("INVALID_QUERY")},
    openapi_extensions=doc.parameters(
        doc.query_param(
            "minutes",
            "How many minutes",
            doc.integer_schema(COST_MINUTES_MIN, COST_MINUTES_MAX, COST_MINUTES_DEFAULT),
        )
    ),
)
def cost_by_type() -> Response[str]:
    tenant = caller_tenant(router)
    query = read_query(router, {"minutes"})
    return json_response(200, job_cost.cost_report(runtime().repo, tenant, query, system_clock()))
