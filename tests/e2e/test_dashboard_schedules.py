"""The dashboard's Schedules page in a real browser (Playwright driving Debian's Chromium) against the local stack:
create a schedule with the preview of its next five runs, disable and enable it, run it now, delete it."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Client, LocalStackProcess
from tests.e2e.test_dashboard import CHROMIUM, browser, connect, go, page  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]


def test_create_preview_toggle_run_and_delete_a_schedule(
    stack: LocalStackProcess,
    tenant: Client,
    page: Page,  # noqa: F811  (the fixture imported above)
) -> None:
    connect(page, stack.url, tenant.key)
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete the schedule …?"

    # Given the Schedules page, empty
    go(page, "Schedules")
    expect(page.locator("#schedules-empty")).to_be_visible()
    expect(page.locator("#schedule-type option[value='simulate']")).to_have_count(1)

    # When a cron expression is typed, Then the next five runs are shown, as the API computes them
    page.get_by_label("Name", exact=True).fill("every-quarter")
    page.get_by_label("Cron expression").fill("*/15 * * * *")
    expect(page.locator("#schedule-preview li")).to_have_count(5)
    expected = tenant.get("/schedules/preview", params={"cron": "*/15 * * * *", "timezone": "UTC"}).json()["runs"]
    for item, run in zip(page.locator("#schedule-preview li").all_text_contents(), expected, strict=True):
        assert run in item and datetime.fromisoformat(run).minute % 15 == 0
    # And a bad one says why, with no runs
    page.get_by_label("Cron expression").fill("* * * * * *")
    expect(page.locator("#schedule-preview-error")).to_contain_text("'cron' must be five fields")
    expect(page.locator("#schedule-preview li")).to_have_count(0)

    # When it is created (simulate, a payload)
    page.get_by_label("Cron expression").fill("*/15 * * * *")
    page.locator("#schedule-type").select_option("simulate")
    page.get_by_label("Payload of each job, JSON").fill('{"target": "cat.png", "durationMs": 0, "failureRate": 0}')
    page.get_by_role("button", name="Create schedule").click()

    # Then it is listed, enabled, with its next run; and the API has it
    row = page.locator("#schedules-table tr[data-schedule='every-quarter']")
    expect(row.locator("[data-col='state']")).to_have_text("enabled")
    (created,) = tenant.get("/schedules").json()["schedules"]
    assert (created["cron"], created["job"]["type"], created["enabled"]) == ("*/15 * * * *", "simulate", True)

    # When it is disabled, Then it shows disabled, with no next run
    row.get_by_role("button", name="Disable every-quarter").click()
    expect(row.locator("[data-col='state']")).to_have_text("disabled")
    expect(row.locator("[data-col='next']")).to_have_text("—")
    assert tenant.get(f"/schedules/{created['id']}").json()["nextRunAt"] is None
    row.get_by_role("button", name="Enable every-quarter").click()
    expect(row.locator("[data-col='state']")).to_have_text("enabled")

    # When it is run now, Then a job is enqueued for it, which completes
    row.get_by_role("button", name="Run every-quarter now").click()
    expect(page.locator("#schedules-status")).to_contain_text("every-quarter ran now: job")
    # (the job the page names: a quarter hour passing meanwhile would add a job of the schedule's own)
    status_text = page.locator("#schedules-status").inner_text()
    shown = re.search(r"ran now: job (\S{8})", status_text)
    assert shown, status_text
    jobs = [j for j in tenant.get("/jobs").json()["jobs"] if j.get("scheduleId") == created["id"]]
    (job,) = [j for j in jobs if j["id"].startswith(shown.group(1))]
    assert tenant.wait_for(job["id"], {"completed"}, timeout=20)["scheduleId"] == created["id"]

    # When it is deleted, Then the page and the API no longer have it
    row.get_by_role("button", name="Delete every-quarter").click()
    expect(page.locator("#schedules-status")).to_contain_text("every-quarter was deleted")
    expect(page.locator("#schedules-table tbody tr")).to_have_count(0)
    assert tenant.get("/schedules").json()["count"] == 0
