"""The dashboard in a real browser: Playwright (sync API) driving Debian's Chromium against the local stack.

One flow, as a user would go through it: enter the key (a wrong one first), submit jobs and watch them in the table
and in the detail timeline, cancel a scheduled job, retry a failed one (one click, then in bulk), upload an image and
download its grayscale result. Screenshots land in ``tests/e2e/dashboard_artifacts/``; with UPDATE_README_SCREENSHOT=1
the overview is also copied to ``docs/dashboard.png`` for the README.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.e2e.conftest import ROOT, Client, LocalStackProcess, add_key

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "dashboard_artifacts"
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAILURE = "Simulated failure of resize (shouldFail)"
SLOW = 20_000  # ms: a job's whole life, retries included, is a few seconds locally

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def small_png(path: Path) -> Path:
    gradient = Image.linear_gradient("L").resize((96, 64))
    Image.merge(
        "RGB", [gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("L", (96, 64), 200)]
    ).save(path)
    return path


# ------------------------------------------------------------------ steps


def connect(page: Page, url: str, key: str) -> None:
    page.goto(url + "/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    # A wrong key is refused (403) and the dialog asks again
    page.get_by_label("API key", exact=True).fill("not-a-valid-key-0000000000")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#key-error")).to_contain_text("refused")
    expect(dialog).to_be_visible()
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Connect").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#conn")).to_contain_text("Connected")
    expect(page.locator("#conn")).to_contain_text(f"key …{key[-4:]}")  # a long key: its last four tell it apart
    expect(page.locator("#submit-type option[value='simulate']")).to_have_count(1)


def go(page: Page, view: str) -> None:
    page.get_by_role("navigation", name="Views").get_by_role("link", name=view).click()


def submit(page: Page, job_type: str, payload: dict[str, Any], *, max_attempts: str = "", delay: str = "") -> str:
    go(page, "Overview")
    page.locator("#submit-type").select_option(job_type)
    page.get_by_label("Payload (JSON)").fill(json.dumps(payload))
    page.get_by_label("Max attempts").fill(max_attempts)
    page.get_by_label("Delay").fill(delay)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/jobs")) as answer:
        page.get_by_role("button", name="Submit job").click()
    assert answer.value.status == 202, answer.value.text()
    job_id = str(answer.value.json()["id"])
    expect(page.locator("#submit-job-link")).to_have_text(job_id)
    return job_id


def row_status(page: Page, table: str, job_id: str) -> Any:
    return page.locator(f"#{table} tr[data-id='{job_id}'] [data-col='status']")


def open_detail(page: Page, job_id: str) -> None:
    go(page, "Overview")
    page.locator(f"#jobs-table tr[data-id='{job_id}'] a").click()
    expect(page.locator("#detail-id")).to_have_text(job_id)


# ------------------------------------------------------------------ the test


def test_the_key_hint_never_shows_a_short_key(stack: LocalStackProcess, page: Page) -> None:
    # Given a short key (11 characters): its "last four" would give most of it away
    short = "sk-" + os.urandom(4).hex()
    add_key(stack, short, "short-key-tenant")
    page.goto(stack.url + "/")
    page.evaluate("key => localStorage.setItem('jobs-dashboard.apiKey', key)", short)
    page.reload()
    # Then: connected, with no part of the key on the page
    expect(page.locator("#conn")).to_have_text("Connected")
    assert short[-4:] not in page.locator("header").inner_text()


def test_dashboard_end_to_end(
    stack: LocalStackProcess, tenant: Client, page: Page, artifacts: Path, tmp_path: Path
) -> None:
    connect(page, stack.url, tenant.key)

    # The API unreachable for a moment: a visible banner, gone once it answers again
    unreachable = re.compile(r"/(stats|jobs|types)\b")
    page.route(unreachable, lambda route: route.abort())
    expect(page.locator("#banner")).to_contain_text("Cannot reach the API")
    page.unroute(unreachable)
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator("#conn")).to_contain_text("Connected")

    # A job that completes: in the table, then in the detail timeline
    ok = submit(page, "simulate", {"target": "ok.png", "failureRate": 0})
    expect(row_status(page, "jobs-table", ok)).to_have_text("completed", timeout=SLOW)
    # ...and the "Enqueued ..." notice follows it: its badge is not left at "pending"
    expect(page.locator("#submit-job-status")).to_have_text("completed", timeout=SLOW)
    page.locator(f"#jobs-table tr[data-id='{ok}']").evaluate("row => { row.dataset.probe = 'kept'; }")
    open_detail(page, ok)
    expect(page.locator("#detail-status")).to_have_text("completed")
    expect(page.locator("#timeline li.tl-entry").last).to_contain_text("completed")
    expect(page.locator("#detail-result")).to_contain_text("Resized ok.png")
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    expect(page.get_by_role("button", name="Retry job")).to_be_disabled()
    expect(page.locator("#detail-summary [data-field='groupId']")).to_be_hidden()  # shown only when set

    # A job that always fails, with 2 attempts: retries and the backoff wait in its timeline
    broken = submit(page, "simulate", {"target": "broken.png", "shouldFail": True, "durationMs": 200}, max_attempts="2")
    expect(row_status(page, "jobs-table", broken)).to_have_text("failed", timeout=SLOW)
    # The table was patched in place on every refresh, not rebuilt: the first row is the same element
    expect(page.locator(f"#jobs-table tr[data-id='{ok}']")).to_have_attribute("data-probe", "kept")
    open_detail(page, broken)
    expect(page.locator("#detail-status")).to_have_text("failed")
    timeline = page.locator("#timeline > li")
    expect(timeline).to_have_count(6)
    expect(timeline.nth(0)).to_contain_text("pending")
    expect(timeline.nth(1)).to_contain_text(re.compile(r"processing\s*#1"))
    expect(timeline.nth(2)).to_contain_text(re.compile(r"retrying\s*#1"))
    expect(timeline.nth(2).locator(".tl-error")).to_have_text(FAILURE)
    expect(timeline.nth(3)).to_have_class(re.compile(r"\btl-gap\b"))
    expect(timeline.nth(3)).to_contain_text(re.compile(r"waited \d+\.\d s"))
    expect(timeline.nth(4)).to_contain_text(re.compile(r"processing\s*#2"))
    expect(timeline.nth(5)).to_contain_text(re.compile(r"failed\s*#2"))
    expect(page.get_by_role("button", name="Retry job")).to_be_enabled()
    expect(page.locator("#detail-summary [data-field='error']")).to_have_text(FAILURE)
    page.screenshot(path=str(artifacts / "failed-timeline.png"), full_page=True)

    # An API error is shown with its code and details
    go(page, "Overview")
    page.locator("#submit-type").select_option("simulate")
    page.get_by_label("Payload (JSON)").fill("{}")
    page.get_by_label("Max attempts").fill("")
    page.get_by_label("Delay").fill("")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-error")).to_contain_text("INVALID_PAYLOAD")
    expect(page.locator("#submit-error .err-details")).to_contain_text("target")

    # A scheduled job, cancelled from its detail view
    later = submit(page, "simulate", {"target": "later.png"}, delay="600")
    page.locator("#submit-job-link").click()
    expect(page.locator("#detail-status")).to_have_text("scheduled")
    expect(page.get_by_role("button", name="Retry job")).to_be_disabled()
    page.get_by_role("button", name="Cancel job").press("Enter")  # keyboard-operable
    expect(page.locator("#detail-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    expect(page.get_by_role("button", name="Retry job")).to_be_enabled()
    expect(page.locator("#timeline li.tl-entry").last).to_contain_text("cancelled")
    assert tenant.get(f"/jobs/{later}").json()["status"] == "cancelled"

    # The failures view: the failed job with its last error, retried with one click
    go(page, "Failures")
    failed_row = page.locator(f"#failures-table tr[data-id='{broken}']")
    expect(failed_row.locator("[data-col='error']")).to_have_text(FAILURE)
    expect(page.locator("#failures-table tbody tr")).to_have_count(1)
    page.get_by_role("button", name=f"Retry job {broken}").click()
    expect(page.locator("#failures-status")).to_contain_text(re.compile(r"now (pending|processing)"))
    record = tenant.get(f"/jobs/{broken}").json()
    assert [entry["status"] for entry in record["history"]].count("pending") == 2, record["history"]
    # ...it fails again (shouldFail), and "Retry all matching" retries the filtered set
    tenant.wait_for(broken, {"failed"})
    page.locator("#failures-type").select_option("simulate")
    expect(page.locator("#failures-table tbody tr")).to_have_count(1, timeout=SLOW)
    page.get_by_role("button", name="Retry all matching").click()
    expect(page.locator("#failures-status")).to_have_text(re.compile(r"Retried 1 of 1 failed simulate job\b"))
    history = tenant.get(f"/jobs/{broken}").json()["history"]
    assert [entry["status"] for entry in history].count("pending") == 3, history

    # The image flow: upload a PNG, watch the grayscale job, preview and download the result
    go(page, "Image")
    page.get_by_label("Image file").set_input_files(str(small_png(tmp_path / "colour.png")))
    page.get_by_role("button", name="Upload and convert").click()
    expect(page.locator("#image-status")).to_have_text("completed", timeout=SLOW)
    expect(page.locator("#image-output")).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.getElementById('image-preview'); return i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator("#image-preview").evaluate("i => i.naturalWidth") == 96
    href = page.locator("#image-download").get_attribute("href")
    assert href and href.startswith("http"), href
    download = requests.get(href, timeout=10)
    assert download.status_code == 200, download.text
    grey = Image.open(io.BytesIO(download.content))
    assert (grey.format, grey.mode, grey.size) == ("PNG", "L", (96, 64))
    page.screenshot(path=str(artifacts / "image-flow.png"), full_page=True)
    # ...and its detail view offers the same result as a download link
    image_job = page.locator("#image-job-link").inner_text()
    page.locator("#image-job-link").click()
    expect(page.locator("#detail-id")).to_have_text(image_job)
    expect(page.locator("#detail-status")).to_have_text("completed")
    page.get_by_role("button", name="Download result").click()
    expect(page.locator("#result-link")).to_be_visible()
    assert requests.get(page.locator("#result-link").get_attribute("href") or "", timeout=10).status_code == 200

    # The overview, with everything above in its stats, chart and table
    go(page, "Overview")
    page.get_by_label("Delay").fill("")
    page.get_by_role("button", name="Reset payload to example").click()
    expect(page.locator("#stats [data-stat='completed'] .stat-value")).to_have_text("2")
    expect(page.locator("#stats [data-stat='cancelled'] .stat-value")).to_have_text("1")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(4)
    expect(page.locator("#chart-summary")).to_contain_text(": 2 completed", timeout=SLOW)
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":  # opt-in, so test runs leave the checkout clean
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(artifacts / "overview.png", README_SCREENSHOT)

    # Flow-control fields show for jobs that have them: a grouped job that reported progress
    grouped = tenant.enqueue(
        {
            "type": "simulate",
            "payload": {"target": "g.png", "failureRate": 0, "durationMs": 100, "steps": 2},
            "groupId": "dash-group",
        }
    )
    tenant.wait_for(grouped["id"], {"completed"})
    open_detail(page, grouped["id"])
    expect(page.locator("#detail-summary [data-field='groupId']")).to_have_text("dash-group")
    expect(page.locator("#detail-summary [data-field='progress']")).to_contain_text("100 %")


def test_a_page_the_api_answers_short_is_filled_from_the_pages_after_it(
    stack: LocalStackProcess, tenant: Client, page: Page
) -> None:
    # Given two scheduled jobs, and an API that answers their listing first with an empty page and a cursor (as it
    # may when a request's index entries held none of the status asked for)
    scheduled = {
        tenant.enqueue({"type": "simulate", "payload": {"target": f"{n}.png"}, "delaySeconds": 600})["id"]
        for n in range(2)
    }
    requested: list[dict[str, list[str]]] = []

    def empty_first(route: Route) -> None:
        url = urlsplit(route.request.url)
        query = parse_qs(url.query)
        requested.append(dict(query))
        if query.pop("cursor", None) == ["read-on"]:
            route.continue_(url=urlunsplit(url._replace(query=urlencode(query, doseq=True))))
        else:
            route.fulfill(json={"jobs": [], "count": 0, "nextCursor": "read-on"})

    connect(page, stack.url, tenant.key)
    page.route(re.compile(r"/jobs\?"), empty_first)

    # When the overview lists the scheduled jobs (the unfiltered listing shows the same two: wait for the read-on)
    with page.expect_request(lambda request: "cursor=read-on" in request.url):
        page.locator("#filter-status").select_option("scheduled")

    # Then the page shows both, read from the page after the empty one, and has no next page
    rows = page.locator("#jobs-table tbody tr")
    expect(rows).to_have_count(2)
    assert {row.get_attribute("data-id") for row in rows.all()} == scheduled
    expect(page.locator("#jobs-empty")).to_be_hidden()
    expect(page.locator("#page-info")).to_have_text("Page 1")
    expect(page.locator("#next-page")).to_be_disabled()
    assert {"cursor": ["read-on"], "status": ["scheduled"], "limit": ["20"]} in requested


def test_a_page_left_empty_after_its_reads_says_so_and_offers_the_next(
    stack: LocalStackProcess, tenant: Client, page: Page
) -> None:
    # Given an API that answers every listing request with an empty page and a cursor
    requests_seen: list[str] = []

    def always_empty(route: Route) -> None:
        requests_seen.append(route.request.url)
        route.fulfill(json={"jobs": [], "count": 0, "nextCursor": f"c{len(requests_seen)}"})

    connect(page, stack.url, tenant.key)
    page.route(re.compile(r"/jobs\?"), always_empty)

    # When the overview lists processing jobs
    page.locator("#filter-status").select_option("processing")

    # Then each refresh stops after a bounded number of requests, the page says why it is empty, and Next reads on
    expect(page.locator("#jobs-empty")).to_contain_text("Next reads further")
    expect(page.locator("#next-page")).to_be_enabled()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(0)
    listing: list[str] = []
    deadline = time.monotonic() + 10
    while sum("cursor=" not in url for url in listing) < 2:  # two refreshes begun: the first one is whole
        assert time.monotonic() < deadline, listing
        page.wait_for_timeout(100)
        listing = [url for url in requests_seen if "status=processing" in url]
    first, second = [index for index, url in enumerate(listing) if "cursor=" not in url][:2]
    assert second - first == 5, listing
    assert all("cursor=c" in url for url in listing[first + 1 : second]), listing


PAUSE_OK = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}


def test_pause_a_type_then_cancel_its_waiting_jobs_then_resume(
    stack: LocalStackProcess, tenant: Client, page: Page
) -> None:
    connect(page, stack.url, tenant.key)

    # Given the types view: simulate is running
    go(page, "Types")
    row = page.locator("#types-table tr[data-type='simulate']")
    expect(row.locator("[data-col='state']")).to_have_text("running")

    # When simulate is paused from the dashboard
    row.get_by_role("button", name="Pause simulate").click()

    # Then it shows paused, and so does the API; jobs enqueued now wait
    expect(row.locator("[data-col='state']")).to_have_text("paused")
    expect(page.locator("#types-status")).to_contain_text("simulate is paused")
    assert next(t for t in tenant.get("/types").json()["types"] if t["name"] == "simulate")["paused"] is True
    waiting = [tenant.enqueue(PAUSE_OK) for _ in range(2)]

    # When "Cancel all matching" is used for simulate, beside "Retry all matching"
    go(page, "Failures")
    page.locator("#failures-type").select_option("simulate")
    page.get_by_role("button", name="Cancel all matching").click()

    # Then both waiting jobs are cancelled
    expect(page.locator("#failures-status")).to_have_text("Cancelled 2 waiting simulate jobs.")
    assert {tenant.get(f"/jobs/{job['id']}").json()["status"] for job in waiting} == {"cancelled"}

    # When it is resumed, a new job runs
    go(page, "Types")
    row.get_by_role("button", name="Resume simulate").click()
    expect(row.locator("[data-col='state']")).to_have_text("running")
    job = tenant.enqueue(PAUSE_OK)
    assert tenant.wait_for(job["id"], {"completed", "failed"}, timeout=15)["status"] == "completed"


def test_a_read_key_sees_the_jobs_with_every_write_control_hidden(
    stack: LocalStackProcess, tenant: Client, page: Page
) -> None:
    # Given a tenant with a failed job, and a read key of that tenant
    failed = tenant.enqueue({"type": "simulate", "payload": {"target": "x.png", "failureRate": 1}, "maxAttempts": 1})
    tenant.wait_for(failed["id"], {"failed"})
    read_key = f"read-{os.urandom(12).hex()}"
    tenant_name = tenant.get("/me").json()["tenant"]
    add_key(stack, read_key, tenant_name, scope="read")

    # When the dashboard connects with the read key
    page.goto(stack.url + "/")
    page.get_by_label("API key", exact=True).fill(read_key)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#conn")).to_contain_text("Connected")

    # Then it says the key is read-only and hides submitting, while the jobs are listed
    expect(page.locator("#scope-badge")).to_have_text("read-only key")
    expect(page.locator("body")).to_have_attribute("data-scope", "read")
    expect(page.locator("#submit-form")).to_be_hidden()
    expect(page.locator(f"#jobs-table tr[data-id='{failed['id']}']")).to_be_visible()
    # And the job's detail has no cancel or retry, the failures no bulk actions, the types no pause buttons
    open_detail(page, failed["id"])
    expect(page.locator("#detail-status")).to_have_text("failed")
    expect(page.locator("#action-retry")).to_be_hidden()
    expect(page.locator("#action-cancel")).to_be_hidden()
    go(page, "Failures")
    expect(page.locator("#retry-all")).to_be_hidden()
    expect(page.locator("#cancel-all")).to_be_hidden()
    go(page, "Types")
    expect(page.locator("#types-table tr[data-type='simulate']")).to_be_visible()
    expect(page.locator("#types-table button[aria-pressed]")).to_have_count(len(tenant.get("/types").json()["types"]))
    expect(page.locator("#types-table button[aria-pressed]").first).to_be_hidden()
    # And the API itself refuses a write with that key
    refused = requests.post(stack.url + "/jobs", json={"type": "simulate"}, headers={"x-api-key": read_key}, timeout=5)
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    # When a full key is entered instead, the controls come back
    page.locator("#change-key").click()
    page.get_by_label("API key", exact=True).fill(tenant.key)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("body")).to_have_attribute("data-scope", "full")
    expect(page.locator("#scope-badge")).to_be_hidden()
