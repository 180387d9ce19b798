"""Each final job's ``cost`` and ``GET /stats/cost``: the API's part at create, the consumer's at the end, the sums
by type."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from functions.handlers import api as api_handler
from tests.integration.harness import Service, failing_job, ok_job

COST_FIELDS = {"usd", "requests", "writeUnits", "readUnits", "lambdaMs"}


def fits(component: str, body: Any) -> None:
    schemas = json.loads(api_handler.openapi_json())["components"]["schemas"]
    root = {"$ref": f"#/components/schemas/{component}", "components": {"schemas": schemas}}
    Draft202012Validator(root).validate(body)


def test_a_final_job_carries_what_it_cost_and_a_pending_one_does_not_show_it(service: Service) -> None:
    # Given a job, accepted
    created = service.create_job(ok_job())
    assert "cost" not in created
    assert "cost" not in service.job(created["id"])

    # When it has run
    service.drain()
    job = service.job(created["id"])

    # Then its record carries its cost: the API's create and the consumer's run, counted from their own calls
    assert job["status"] == "completed"
    cost = job["cost"]
    assert set(cost) == COST_FIELDS
    # at least: the gateway request, two invocations, the create write, the send, the claim, the final write
    assert cost["requests"] >= 7
    assert cost["writeUnits"] >= 3
    assert cost["lambdaMs"] > 0
    assert 0 < cost["usd"] < 0.001
    fits("Job", job)


def test_stats_cost_sums_the_final_jobs_by_type(service: Service) -> None:
    # Given two completed jobs and a failed one
    done = [service.create_job(ok_job()) for _ in range(2)]
    broken = service.create_job(failing_job(max_attempts=1))
    service.drain()
    jobs = [service.job(job["id"]) for job in (*done, broken)]
    assert [job["status"] for job in jobs] == ["completed", "completed", "failed"]

    # When the last 10 minutes' cost is read
    status, body, _ = service.api("GET", "/stats/cost", query={"minutes": "10"})

    # Then the three jobs' costs are summed under their type, and in the total
    assert status == 200, body
    fits("CostByType", body)
    assert body["minutes"] == 10
    sums = body["types"][jobs[0]["type"]]
    assert sums["jobs"] == 3
    assert sums["usd"] == pytest.approx(sum(job["cost"]["usd"] for job in jobs), abs=1e-9)
    assert sums["writeUnits"] == pytest.approx(sum(job["cost"]["writeUnits"] for job in jobs))
    assert body["total"]["jobs"] == 3
    # And the default is an hour
    assert service.api("GET", "/stats/cost").body["minutes"] == 60


def test_a_retried_job_is_counted_once_with_all_its_runs(service: Service) -> None:
    # Given a job that failed, was retried and failed again
    job = service.create_job(failing_job(max_attempts=1))
    service.drain()
    first = service.job(job["id"])["cost"]
    assert service.api("POST", f"/jobs/{job['id']}/retry").status == 202
    service.drain()
    final = service.job(job["id"])

    # Then its record's cost holds both runs, and the sums hold that total (two ends counted)
    assert final["status"] == "failed"
    assert final["cost"]["usd"] > first["usd"]
    body = service.api("GET", "/stats/cost", query={"minutes": "5"}).body
    assert body["total"]["jobs"] == 2
    assert body["total"]["usd"] == pytest.approx(final["cost"]["usd"], abs=1e-9)


def test_stats_cost_is_per_tenant(service: Service) -> None:
    # Given a job of tenant A that ran
    service.create_job(ok_job())
    service.drain()

    # When tenant B reads its cost
    status, body, _ = service.api("GET", "/stats/cost", key=service.key_b, query={"minutes": "5"})

    # Then it sees none of A's
    assert status == 200, body
    assert body["total"]["jobs"] == 0
    assert body["types"] == {}


@pytest.mark.parametrize("minutes", ["0", "1441", "-1", "x", "1.5", ""])
def test_stats_cost_minutes_out_of_range_is_invalid_query(service: Service, minutes: str) -> None:
    status, body, _ = service.api("GET", "/stats/cost", query={"minutes": minutes})

    assert (status, body["code"]) == (400, "INVALID_QUERY")


def test_stats_cost_needs_a_key(service: Service) -> None:
    status, body, _ = service.api("GET", "/stats/cost", key=None)

    assert (status, body["code"]) == (403, "FORBIDDEN")
