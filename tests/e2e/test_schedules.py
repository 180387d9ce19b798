"""Recurring schedules over HTTP against the local stack (``make run``): the local sweeper fires them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.settings import Settings
from tests.e2e.conftest import Client, LocalStackProcess

pytestmark = pytest.mark.e2e

OK = {"type": "simulate", "payload": {"target": "cat.png", "durationMs": 0, "failureRate": 0}}


def _make_due(stack: LocalStackProcess, schedule_id: str, at: str) -> None:
    """Move the schedule's next run back to ``at`` in its table, as if the clock had reached it: minute resolution
    must not make the test wait for the next minute."""
    ddb = stack.aws("dynamodb")
    table = Settings().schedules_table
    found = ddb.scan(
        TableName=table,
        FilterExpression="sk = :sk",
        ExpressionAttributeValues={":sk": {"S": f"schedule#{schedule_id}"}},
    )["Items"]
    assert len(found) == 1
    ddb.update_item(
        TableName=table,
        Key={"pk": found[0]["pk"], "sk": found[0]["sk"]},
        UpdateExpression="SET nextRunAt = :at",
        ExpressionAttributeValues={":at": {"S": at}},
    )


def _schedule(tenant: Client, schedule_id: str) -> dict[str, Any]:
    response = tenant.get(f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_every_minute_schedule_fires_under_the_local_sweeper(stack: LocalStackProcess, tenant: Client) -> None:
    # Given an every-minute schedule, created over HTTP away from a minute's end (so that the sweeper cannot fire
    # its first minute before the test moves its run back)
    while datetime.now(UTC).second >= 55:
        time.sleep(0.5)
    response = tenant.post("/schedules", {"name": "every-minute", "cron": "* * * * *", "job": OK})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["nextRunAt"].endswith(":00.000Z") and created["lastJobId"] is None

    # When its run comes due (moved back by a minute, rather than waiting for it)
    _make_due(stack, created["id"], "2020-01-01T00:00:00.000Z")

    # Then the local sweeper (every 2 s) enqueues one job for it, which runs, and moves the schedule on
    deadline = time.monotonic() + 15
    while (schedule := _schedule(tenant, created["id"]))["lastJobId"] is None:
        assert time.monotonic() < deadline, schedule
        time.sleep(0.25)
    job = tenant.wait_for(schedule["lastJobId"], {"completed", "failed"}, timeout=20)
    assert (job["status"], job["scheduleId"]) == ("completed", created["id"])
    assert schedule["lastRunAt"] > "2020-01-01" and schedule["nextRunAt"] > schedule["lastRunAt"]
    # And only one: the missed time fires once, not for every minute since 2020. A job created at or after the new
    # nextRunAt is the next minute's own run (the test may straddle a minute), so it is not a catch-up.
    time.sleep(3)
    jobs = tenant.get("/jobs", params={"limit": "100"}).json()["jobs"]
    mine = [j for j in jobs if j.get("scheduleId") == created["id"]]
    caught_up = [j["id"] for j in mine if j["createdAt"] < schedule["nextRunAt"]]
    assert caught_up == [job["id"]]


def test_schedules_are_managed_over_http(tenant: Client) -> None:
    # Create, list, preview, change, run now, delete
    created = tenant.post(
        "/schedules", {"name": "weekdays", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris", "job": OK}
    ).json()
    assert tenant.get("/schedules").json()["schedules"] == [created]
    runs = tenant.get("/schedules/preview", params={"cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris"}).json()
    assert runs["runs"][0] == created["nextRunAt"] and len(runs["runs"]) == 5
    duplicate = tenant.post("/schedules", {"name": "weekdays", "cron": "@daily", "job": OK})
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "SCHEDULE_EXISTS")
    bad = tenant.post("/schedules", {"name": "bad", "cron": "* * * * * *", "job": OK})
    assert (bad.status_code, bad.json()["code"], bad.json()["details"]["field"]) == (400, "INVALID_SCHEDULE", "cron")

    disabled = tenant.request("PATCH", f"/schedules/{created['id']}", json={"enabled": False})
    assert (disabled.status_code, disabled.json()["nextRunAt"]) == (200, None)
    ran = tenant.post(f"/schedules/{created['id']}/run")
    assert ran.status_code == 202 and ran.json()["scheduleId"] == created["id"]
    assert tenant.wait_for(ran.json()["id"], {"completed"}, timeout=20)["scheduleId"] == created["id"]

    deleted = tenant.delete(f"/schedules/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    missing = tenant.get(f"/schedules/{created['id']}")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")


def test_the_cli_and_the_client_manage_schedules(stack: LocalStackProcess, tenant: Client) -> None:
    from jobsctl import JobsClient
    from tests.e2e.test_cli import as_json, jobs

    # Given a schedule created with the CLI (daily: one due while the test runs would move its next run)
    created = jobs(stack, tenant, "schedules", "create", "cli-made", "0 3 * * *", "--type", "message",
                   "--payload", '{"message": "hi"}', "--timezone", "Asia/Tokyo")  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert created.stdout.startswith("Created cli-made ")
    (listed,) = as_json(jobs(stack, tenant, "schedules", "list", "--json"))
    assert (listed["name"], listed["cron"], listed["timezone"], listed["enabled"]) == (
        "cli-made",
        "0 3 * * *",
        "Asia/Tokyo",
        True,
    )
    # When the client reads, previews, disables and runs it
    with JobsClient(stack.url, tenant.key) as client:
        (schedule,) = list(client.schedules())
        assert schedule.id == listed["id"] and schedule.job == {"type": "message", "payload": {"message": "hi"}}
        assert client.preview_schedule("0 3 * * *", "Asia/Tokyo", count=1) == [schedule.next_run_at]
        assert client.update_schedule(schedule.id, enabled=False).next_run_at is None
        job = client.run_schedule(schedule.id)
        assert job.schedule_id == schedule.id
    # Then the CLI shows the change, runs it again, and deletes it
    assert jobs(stack, tenant, "schedules", "update", schedule.id, "--enable", "--cron", "@hourly").returncode == 0
    assert as_json(jobs(stack, tenant, "schedules", "list", "--json"))[0]["cron"] == "@hourly"
    ran = jobs(stack, tenant, "schedules", "run", schedule.id)
    assert ran.returncode == 0 and ran.stdout.startswith("Enqueued "), ran.stdout + ran.stderr
    bad = jobs(stack, tenant, "schedules", "create", "x", "* * * * * *", "--type", "message")
    assert bad.returncode == 1 and "INVALID_SCHEDULE" in bad.stderr
    assert jobs(stack, tenant, "schedules", "delete", schedule.id).stdout.startswith("Deleted cli-made ")
    assert as_json(jobs(stack, tenant, "schedules", "list", "--json")) == []
