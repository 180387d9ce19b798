"""The dashboard's view of job dependencies in a real browser (Playwright and Debian's Chromium, as
test_dashboard.py): a waiting job shows what it waits for, each dependency a link with its status; cancelling the
dependency from its own view cancels the waiting job, which then says why."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Client, LocalStackProcess
from tests.e2e.test_dashboard import CHROMIUM, browser, connect, page  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]

OK = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}


def test_a_waiting_job_links_to_its_dependencies_and_follows_their_end(
    stack: LocalStackProcess,
    tenant: Client,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    # Given a scheduled job, a completed one, and a job waiting on both
    later = tenant.enqueue({**OK, "delaySeconds": 3600})
    done = tenant.enqueue(OK)
    tenant.wait_for(done["id"], {"completed"})
    waiting = tenant.enqueue({**OK, "dependsOn": [later["id"], done["id"]]})
    assert (waiting["status"], waiting["waitingOn"]) == ("waiting", 1)
    connect(page, stack.url, tenant.key)

    # Then waiting is a status of the stats and of the filter
    expect(page.locator("#stats [data-stat='waiting']")).to_have_count(1)
    expect(page.locator("#filter-status option[value='waiting']")).to_have_count(1)

    # When the waiting job is opened
    page.goto(f"{stack.url}/#/jobs/{waiting['id']}")
    expect(page.locator("#detail-id")).to_have_text(waiting["id"])

    # Then it shows waiting, how many it waits on, and each dependency as a link with its status
    expect(page.locator("#detail-status")).to_have_text("waiting")
    expect(page.locator("#dependencies-summary")).to_have_text("Waiting on 1 of 2 dependencies")
    items = page.locator("#dependencies-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0).locator(".badge")).to_have_text("scheduled")
    expect(items.nth(1).locator(".badge")).to_have_text("completed")
    expect(page.get_by_role("button", name="Cancel job")).to_be_enabled()

    # When the scheduled dependency is followed and cancelled from its own view
    page.get_by_role("link", name=f"Dependency {later['id']}").click()
    expect(page.locator("#detail-id")).to_have_text(later["id"])
    expect(page.locator("#detail-dependencies")).to_be_hidden()
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#detail-status")).to_have_text("cancelled")

    # Then the waiting job is cancelled because of it
    page.go_back()
    expect(page.locator("#detail-id")).to_have_text(waiting["id"])
    expect(page.locator("#detail-status")).to_have_text("cancelled", timeout=15_000)
    expect(page.locator("[data-field='error']")).to_have_text(f"dependency {later['id']} cancelled")
    expect(items.nth(0).locator(".badge")).to_have_text("cancelled")
