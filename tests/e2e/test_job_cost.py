"""Each job's cost against the running local stack: the final record's ``cost``, ``GET /stats/cost`` summing it by
type (through the real stats aggregator on the table's stream), and the dashboard's "Cost per type" card in a
browser."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Client, LocalStackProcess
from tests.e2e.test_dashboard import CHROMIUM, browser, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


def wait_for_cost(tenant: Client, job_type: str, jobs: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = tenant.get("/stats/cost", params={"minutes": "5"})
        assert response.status_code == 200, response.text
        body = dict(response.json())
        if body["types"].get(job_type, {}).get("jobs", 0) >= jobs:
            return body
        assert time.monotonic() < deadline, f"the stats never counted {jobs} {job_type} jobs: {body}"
        time.sleep(0.3)


def test_a_message_job_costs_what_its_record_says_and_the_stats_sum_it(tenant: Client) -> None:
    # Given two message jobs that ran
    ids = [tenant.enqueue({"type": "message", "payload": {"message": f"hi {i}"}})["id"] for i in range(2)]
    jobs = [tenant.wait_for(job_id, {"completed"}) for job_id in ids]

    # Then each record carries its cost
    for job in jobs:
        assert set(job["cost"]) == {"usd", "requests", "writeUnits", "readUnits", "lambdaMs"}
        assert 0 < job["cost"]["usd"] < 0.001
        assert job["cost"]["requests"] >= 7

    # And GET /stats/cost sums them under their type
    body = wait_for_cost(tenant, "message", 2)
    assert body["types"]["message"]["usd"] == pytest.approx(sum(job["cost"]["usd"] for job in jobs), abs=1e-9)
    assert body["total"]["jobs"] == 2
    # A bad window is the usual 400
    bad = tenant.get("/stats/cost", params={"minutes": "1441"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_QUERY")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_the_dashboard_shows_cost_per_type_for_the_day(
    stack: LocalStackProcess,
    tenant: Client,
    page: Page,  # noqa: F811  (the fixture imported above)
) -> None:
    # Given a message job that ran and was counted
    job_id = tenant.enqueue({"type": "message", "payload": {"message": "dashboard"}})["id"]
    tenant.wait_for(job_id, {"completed"})
    wait_for_cost(tenant, "message", 1)

    # When the dashboard opens with the tenant's key
    page.goto(stack.url + "/")
    page.evaluate("key => localStorage.setItem('jobs-dashboard.apiKey', key)", tenant.key)
    page.reload()

    # Then the overview's cost card has a row for the type, with one job and its dollars
    row = page.locator("#cost-table tbody tr[data-type='message']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator("td").nth(1)).to_have_text("1")
    expect(row.locator("td").nth(2)).to_contain_text("$")
    expect(page.locator("#cost-empty")).to_be_hidden()
    expect(page.locator("#cost-total")).to_contain_text("per million")
