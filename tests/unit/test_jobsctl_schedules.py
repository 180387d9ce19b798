"""``jobs schedules ...`` and the client's schedule methods, against the fake HTTP layer of the client tests."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_jobsctl_cli import api, run  # noqa: F401  (the fixture)
from tests.unit.test_jobsctl_client import FakeApi, job_body, query

SCHEDULE = {
    "id": "0190f2a4-0000-7000-8000-000000000001",
    "name": "nightly",
    "cron": "30 2 * * *",
    "timezone": "Europe/Paris",
    "job": {"type": "message", "payload": {"message": "hi"}},
    "enabled": True,
    "nextRunAt": "2026-12-08T01:30:00.000Z",
    "lastRunAt": None,
    "lastJobId": None,
    "createdAt": "2026-12-07T00:00:00.000Z",
    "updatedAt": "2026-12-07T00:00:00.000Z",
}


def _json(request: Any) -> Any:
    return json.loads(request.body)


def test_create_sends_the_schedule_and_prints_it(api: FakeApi) -> None:  # noqa: F811
    api.on("POST", "/schedules", lambda request: (201, SCHEDULE, {}))
    result = run("schedules", "create", "nightly", "30 2 * * *", "--type", "message", "--payload", '{"message": "hi"}',
                 "--timezone", "Europe/Paris", "--priority", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Created nightly 0190f2a4-")
    assert _json(api.requests[0]) == {
        "name": "nightly",
        "cron": "30 2 * * *",
        "job": {"type": "message", "payload": {"message": "hi"}, "priority": 7},
        "enabled": True,
        "timezone": "Europe/Paris",
    }
    # --name/--cron work as well; no job is a usage error
    assert run("schedules", "create", "--name", "n", "--cron", "@daily", "--job", '{"type": "message"}').exit_code == 0
    assert run("schedules", "create", "n", "@daily").exit_code == 2


def test_update_list_run_delete(api: FakeApi) -> None:  # noqa: F811
    path = f"/schedules/{SCHEDULE['id']}"
    api.on("PATCH", path, lambda request: (200, {**SCHEDULE, "enabled": False, "nextRunAt": None}, {}))
    api.on("GET", "/schedules", lambda request: (200, {"schedules": [SCHEDULE], "count": 1, "nextCursor": None}, {}))
    api.on("POST", f"{path}/run", lambda request: (202, job_body("j-1", scheduleId=SCHEDULE["id"]), {}))
    api.on("DELETE", path, lambda request: (200, SCHEDULE, {}))

    updated = run("schedules", "update", SCHEDULE["id"], "--disable", "--cron", "0 3 * * *")
    assert updated.exit_code == 0 and "disabled" in updated.output
    assert _json(api.requests[-1]) == {"cron": "0 3 * * *", "enabled": False}
    assert run("schedules", "update", SCHEDULE["id"]).exit_code == 2  # nothing to change

    listed = run("schedules", "list", "--json")
    assert [item["name"] for item in json.loads(listed.output)] == ["nightly"]
    assert query(api.requests[-1]) == {"limit": "50"}
    assert run("schedules", "run", SCHEDULE["id"]).output.startswith("Enqueued ")
    assert run("schedules", "delete", SCHEDULE["id"]).output.startswith("Deleted nightly ")


def test_an_invalid_schedule_prints_its_code_and_exits_1(api: FakeApi) -> None:  # noqa: F811
    refusal = {"error": "'cron' must be five fields", "code": "INVALID_SCHEDULE", "details": {"field": "cron"}}
    api.on("POST", "/schedules", lambda request: (400, refusal, {}))
    result = run("schedules", "create", "x", "* * * * * *", "--type", "message")
    assert result.exit_code == 1
    assert "INVALID_SCHEDULE" in result.output and '"field": "cron"' in result.output
